"""``python -m studio.streamlit_main run app.py …``: Streamlit's own command line, started so that a
deep link opened first on a fresh server (say a bookmarked ``/runs?job=…`` after a restart) goes
through ``app.py``'s ``st.navigation`` like every later request.

Streamlit treats a ``pages/`` folder beside the entry script as an old-style multipage app until the
entry script has called ``st.navigation`` once; until then a deep link runs the page file on its own,
with an automatic menu of file names. ``studio serve`` starts Streamlit through this module, which
declares up front what ``st.navigation`` would declare on its first run.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False
    except (ImportError, AttributeError):  # a Streamlit without this switch: the old behaviour stays
        pass
    from streamlit.web.cli import main as streamlit_cli

    sys.argv[0] = "streamlit"
    return streamlit_cli()


if __name__ == "__main__":
    raise SystemExit(main())
