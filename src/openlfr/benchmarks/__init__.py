"""Measurements that the ``openlfr bench`` commands and ``bench/`` scripts share."""
