"""``dae demo``: the whole chain on the built-in dataset. :mod:`.run` (the demo as one call),
:mod:`.line` (the line video and the decisions on it), :mod:`.report` (the Markdown report)."""
