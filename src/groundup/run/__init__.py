"""The run layer: what `groundup train`, `lr-find`, `evaluate`, `predict` and `export` do, one module per job.

    build      find the data, make the loaders and the learner (train, lr-find, evaluate)
    resume     read a checkpoint once and check every resume rule
    fit        the fit with a run's callbacks
    folder     the run folder, summary.json, report.html
    train      all of the above in order: `train(cfg, out=..., resume=...)`
    config     `TrainConfig`, the settings of a run (and TOML files of them)
    recipes    named presets of settings (`--recipe fast`)
    report · training_plot · interpret · machine    what a run folder shows
    predictor · export    a trained model at work: predicting files, running without groundup

Nothing here parses a command line: `groundup.commands` does, and calls these. Import from the
module of the job: `from groundup.run.train import train`, `from groundup.run.build import build_learner`.
"""

