"""Retraining the probe in the background: a thread of its own, for the search page's labelling mode.

:class:`BackgroundProbe` runs :func:`~.probe.classify_probe` (predictions written) after
each batch of labels the page sends, one run at a time, and says what the last run
measured.
"""

from __future__ import annotations

import math

from .labels import LabellingError, user_labels
from .probe import classify_probe
from .store import Store


class BackgroundProbe:
    """Retrains the probe (:func:`classify_probe`, predictions written) in a thread of its
    own each time :meth:`request` is called (the search page: after each batch of labels),
    one run at a time; requests made during a run are served by one more run after it.
    ``prior`` is a callable giving the :class:`Prior` or None (called in the thread: the
    prompts' embedding waits for the model, not the caller). :meth:`status` says what the
    last finished run measured: ``version`` (how many runs finished), ``state`` (``idle``,
    ``training``, ``ready`` or ``failed``), ``model``, ``labels``, ``cv_macro_f1``,
    ``coverage``, ``mean_set_size``, ``alpha``, ``fallback`` and ``message``."""

    def __init__(self, store: Store, prior=None, *, alpha: float = 0.1, abstain: bool = False):
        import threading

        self.store, self.prior, self.alpha, self.abstain = store, prior, alpha, abstain
        self._cond = threading.Condition()
        self._wanted = self._done = 0
        self._thread = None
        self._status = {"state": "idle", "version": 0, "model": None, "labels": 0, "cv_macro_f1": None, "coverage": None,
                        "mean_set_size": None, "alpha": alpha, "fallback": None, "message": "not trained yet"}  # fmt: skip

    def request(self) -> int:
        """Ask for a run on the labels as they are now; returns the version that will hold it."""
        import threading

        with self._cond:
            self._wanted += 1
            self._status["state"] = "training"
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="radioalign-probe", daemon=True)
                self._thread.start()
            return self._wanted

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._done >= self._wanted:
                    self._thread = None
                    return
                wanted = self._wanted
            update = self._train()
            with self._cond:
                self._done = wanted
                self._status.update(update, version=wanted, state=update.get("state", "ready"))
                if self._done < self._wanted:
                    self._status["state"] = "training"
                self._cond.notify_all()

    def _train(self) -> dict:
        import logging

        failed = {"state": "failed", "model": None, "cv_macro_f1": None, "coverage": None, "mean_set_size": None, "fallback": None}
        try:
            prior = self.prior() if callable(self.prior) else self.prior
            summary = classify_probe(self.store, prior, alpha=self.alpha, abstain=self.abstain)
        except LabellingError as err:  # too few labels for a probe and no prompts: the page says so
            return {**failed, "message": " ".join(str(err).split())[:300], "labels": len(user_labels(self.store))}
        except Exception as err:  # noqa: BLE001 - a background thread must not die silently
            logging.getLogger(__name__).exception("the probe could not be trained: %r", err)
            return {**failed, "message": "the probe could not be trained (the server's log says why)"}
        finite = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)  # noqa: E731
        return {"model": summary.model, "labels": summary.labels, "cv_macro_f1": finite(summary.cv_macro_f1),
                "coverage": finite(summary.coverage), "mean_set_size": finite(summary.mean_set_size),
                "fallback": summary.fallback, "message": summary.line()}  # fmt: skip

    def status(self) -> dict:
        with self._cond:
            return dict(self._status)

    def wait(self, version: int, timeout: float | None = None) -> bool:
        """Block until run ``version`` has finished (or ``timeout`` seconds): whether it has."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done >= version, timeout)
