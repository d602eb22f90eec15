"""Tuning: a strategy's search space, the robust objective, trials on the event path (and the
fast path where a kernel exists), and ``deskd tune``'s two stages over an Optuna study."""
