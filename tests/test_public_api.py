import groundup

WALKTHROUGH_NAMES = ["get_image_files", "val2idx", "Dataset", "collate", "DataLoader", "DataLoaders", "Normalize", "Parameter", "Module", "ConvLayer", "Linear", "Sequential", "AdaptivePool", "simple_cnn", "cross_entropy", "accuracy", "SGD", "Learner", "Callback", "SetupLearnerCB", "TrackResults", "LRFinder", "OneCycle", "CancelFitException", "CancelEpochException", "CancelBatchException"]


def test_the_walkthrough_names_are_importable_from_groundup():
    missing = [n for n in WALKTHROUGH_NAMES if not hasattr(groundup, n)]
    assert missing == []
    assert set(WALKTHROUGH_NAMES) <= set(groundup.__all__)
    assert all(hasattr(groundup, n) for n in groundup.__all__)
