"""The Train form's Devices setting (``training.devices``): its pick list and where the run trains."""

from __future__ import annotations

import pytest

from studio.app import forms


def test_devices_are_a_pick_list_and_the_place_says_how_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forms, "cpu_cores", lambda: 8)
    assert forms.devices_choices(gpus=[]) == {"1": "1", "auto": "auto: every free GPU"}
    assert list(forms.devices_choices(gpus=["A", "A", "A"])) == ["1", "auto", "2", "3"]
    field = next(f for f in forms.form_fields("mlp") if f.path == "training.devices")
    assert field.widget == "select" and field.advanced and field.default == "1"
    four = ["NVIDIA H100"] * 4
    assert forms.device_text("auto", gpus=four, devices="2") == (
        "GPUs, 2 free ones, sharing each batch: NVIDIA H100"
    )
    assert forms.device_text("auto", gpus=four, devices="auto").startswith(
        "GPUs, every free one when the run starts (up to 4)"
    )
    assert forms.device_text("auto", gpus=["A"], devices="auto") == "GPU 0: A"
    assert "set Devices to 1" in forms.device_text("cuda", gpus=["A"], devices="2")
    assert forms.device_text("cpu", gpus=[], devices="2").startswith("CPU (8 cores), in 2 processes")
