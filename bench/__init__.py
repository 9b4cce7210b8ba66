"""vidfix's benchmark tools (``vidfix bench ...``): not a library API, the commands' engine.

``quality``: drift of the reference model under each corrector and baseline, judged by the structure judge;
``conditions``: the registry of what it compares; ``report``: its tables and plots.
"""
