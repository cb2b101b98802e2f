"""A stand-in for the Ray worker (``STUDIO_TEST_RAY_ENTRYPOINT``): says it started, waits a moment, reports
progress and success in the real worker's ``@studio`` lines, and notes its start and end in
``$STUDIO_TEST_FAKE_RUNS`` (one line per run), so a test can count runs and how many overlapped."""

import json
import os
import sys
import time

job_id = sys.argv[1]
runs = os.environ["STUDIO_TEST_FAKE_RUNS"]
started = time.time()
time.sleep(float(os.environ.get("STUDIO_TEST_FAKE_SECONDS", "1.5")))
progress = {"epoch": 1, "max_epochs": 1, "step": 1, "total_steps": 1, "fraction": 1.0, "eta_seconds": 0}
print("@studio " + json.dumps({"progress": {**progress, "metrics": {}}}), flush=True)
print("@studio " + json.dumps({"result": "succeeded", "reason": None, "test_metrics": {}}), flush=True)
with open(runs, "a") as out:
    out.write(f"{job_id} {started} {time.time()}\n")
