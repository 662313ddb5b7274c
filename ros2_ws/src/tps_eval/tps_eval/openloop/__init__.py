"""Open-loop evaluation of the VLM planner (``tps-eval openloop``, issue 14 item 9).

* :mod:`.samples` -- one simulated expert episode -> planner samples (frozen detector + tracker +
  tokenizer tokens, camera, ego state, labels, ground-truth boxes and futures). The planner's
  dataset builder (``training/planner_data.py``) writes these as TRAIN/VAL shards; the evaluation
  builds fresh episodes (TEST seeds included) in memory only.
* :mod:`.metrics` -- the metrics (numpy only): L2 in both conventions, oriented-box collisions,
  forecast minADE/minFDE/miss rate, accuracies, instruction following, the two plan baselines.
* :mod:`.evaluate` -- the verb: episodes -> model inputs (``tps_planner.vlm.inputs``) ->
  :class:`tps_planner.vlm.runtime.PlannerRuntime` -> metrics, JSON + Markdown.
"""
