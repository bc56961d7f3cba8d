"""Datasets and input pipeline: CIFAR readers, downloader, batch iterator."""
from .cifar import CIFAR_MEAN_STD, DataError, RestrictedUnpickler, class_names, default_root, load_cifar
from .download import ARCHIVES, dataset_root, download_and_extract
from .loader import DataLoader, crop_flip, cutout

__all__ = ["CIFAR_MEAN_STD", "DataError", "RestrictedUnpickler", "class_names", "default_root", "load_cifar",
           "ARCHIVES", "dataset_root", "download_and_extract", "DataLoader", "crop_flip", "cutout"]
