"""Accuracy evaluation: metrics (pure numpy), LFW View 2 verification, open-set 1:N identification.

``metrics`` has no dependency beyond numpy; ``embedding`` turns image files into descriptors with
the evaluation's face-finding policy and a cache; ``lfw`` and ``identify`` run the protocols;
``plots`` writes ROC and DET figures.
"""
