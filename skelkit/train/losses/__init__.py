"""The training losses as pure functions citing their equations; temperatures are arguments.

One module a family: ``contrastive`` (InfoNCE), ``distillation`` (the KL of CMD and I²MD),
``crossview`` (CrosSCLR's knowledge mining, paper and reference forms), ``ikem`` (IKEM's
exchange and relational distillation); ``common`` holds what they share.
"""
