"""Watchlists: subjects and templates, enrolment with quality checks, 1:N search, thresholds.

Distances are Euclidean; an alert is raised when a face's distance to a subject is *below*
the threshold (``choose_threshold`` picks it from a target FPIR and the watchlist's size).
"""

from .enrol import EnrolmentReport, enrol_subjects, load_watchlist
from .index import ExactIndex, SearchIndex, best_per_subject, make_index, top_subjects
from .model import Subject, Watchlist, WatchlistError
from .threshold import ThresholdChoice, choose_threshold, fpir, load_impostor_table

__all__ = [
    "ExactIndex",
    "SearchIndex",
    "Subject",
    "ThresholdChoice",
    "Watchlist",
    "WatchlistError",
    "best_per_subject",
    "choose_threshold",
    "fpir",
    "load_impostor_table",
    "make_index",
    "top_subjects",
    "load_watchlist",
    "enrol_subjects",
    "EnrolmentReport",
]

