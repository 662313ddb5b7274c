"""Failure-mode-driven scenario search (issue 16): the parameter space (:mod:`.space`), the
search against uniform random sampling (:mod:`.study`) and its report (:mod:`.report`)."""
