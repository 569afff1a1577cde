"""One scoring model from evaluation to deployment: cohort-normalised distances, thresholds per
probe quality band, calibrated for the watchlist's size and a target false alert rate."""

from .model import TOO_POOR, Band, Decision, ScoringError, ScoringModel, WatchlistScoring, load_scoring_model

__all__ = ["TOO_POOR", "Band", "Decision", "ScoringError", "ScoringModel", "WatchlistScoring", "load_scoring_model"]
