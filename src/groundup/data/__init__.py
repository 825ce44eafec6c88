"""Data: download, files and labels, Dataset, DataLoader, normalization (walkthrough steps 1-4)."""

from groundup.data.augment import BatchAugment
from groundup.data.cache import DecodeCache
from groundup.data.download import DATASETS, Archive, list_datasets, untar_data
from groundup.data.files import get_image_files, grandparent_split, label_files, parent_label, val2idx
from groundup.data.folder import ImageDataLoaders, check_image_folder
from groundup.data.images import CorruptImageError, Dataset, open_image
from groundup.data.loader import DataLoader, DataLoaders, WorkerError, collate
from groundup.data.preprocessing import Preprocessing
from groundup.data.show import show_batch
from groundup.data.transforms import Normalize, batch_stats, to_nchw

__all__ = [
    "DATASETS", "Archive", "BatchAugment", "CorruptImageError", "DataLoader", "DataLoaders", "Dataset", "DecodeCache",
    "ImageDataLoaders", "Normalize", "Preprocessing", "WorkerError", "batch_stats", "check_image_folder",
    "collate", "get_image_files", "grandparent_split",
    "label_files", "list_datasets", "open_image", "parent_label", "show_batch", "to_nchw", "untar_data",
    "val2idx",
]  # fmt: skip
