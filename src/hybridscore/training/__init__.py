"""Fine-tuning shared by ``train_teacher`` and ``distill``.

``loop`` (the one Accelerate loop; the loss is a parameter), ``batches`` (dataset, collator,
length-grouped sampler), ``losses``, ``checkpoints`` (resume after a kill), ``launch``
(``accelerate launch`` relaunching and the per-process ``Accelerator``) and ``stage`` (the
stage shell both training stages run).
"""
