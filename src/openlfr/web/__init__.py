"""What the REST API (``openlfr.api``) and the console (``openlfr.console``) share, below both.

Who is asking and what they may do (``deps``: the app's services, the caller, permissions,
``ApiError``; ``security``: sessions, CSRF, tokens, the login rate limit), the outermost request
layer (``guard``: body limits, security headers), uploaded reference images (``enrol``), a
deployment's dashboard figures (``dashboard``) and test helpers (``testing``). Nothing here imports
``api`` or ``console``: both are mounted side by side by the app factory (``openlfr.server``).
"""
