"""The VLM planner (issue 14): a pretrained language trunk (all-MiniLM-L6-v2) reading agent tokens,
camera tokens, one ego token and the instruction's word tokens, in three non-autoregressive stages
(scene understanding -> forecasting -> ego action), each stage's outputs embedded and appended as
tokens for the next.

Modules (all ROS-free):

* :mod:`.layout` -- configuration, class lists, the numeric input features (numpy, no torch): what
  the dataset builder, the trainer, the node and the evaluation share.
* :mod:`.labels` -- ground-truth labels from simulator futures (intent, relevance, lead agent,
  governing light), numpy only.
* :mod:`.trunk` -- loading the MiniLM trunk offline, the same-size from-scratch trunk (ablation),
  LoRA.
* :mod:`.model` -- input assembly and the three stages (torch).
* :mod:`.rationale` -- the rationale rendered from the stage-1/2 outputs the action was conditioned
  on, and the consistency signal between what it says and the planned trajectory (numpy only).
"""
