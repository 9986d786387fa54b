"""Score lens: nDCG@10 of the ranker's own head read after every layer (core/lens.py)."""

import ui

ui.analysis_page("lens", "🔭")
