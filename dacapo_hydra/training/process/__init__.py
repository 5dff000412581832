"""A run's process plumbing, below the training loop.

What a run needs from its processes and their lifetime, apart from what it
trains: starting or joining DDP ranks (:mod:`.launch`, :mod:`.distributed`),
finding the run to resume (:mod:`.resume`) and its folder (:mod:`.run_dir`),
and turning signals and faults into a run's end (:mod:`.signals`, :mod:`.stops`).
Nothing here imports the LightningModule, the callbacks or the train verb.
"""
