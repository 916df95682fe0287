"""What `fit` returns: the final and best states and the history of one run."""

import dataclasses

import equinox as eqx
import numpy as np
from jaxtyping import Float, Int

from ._base import MetaState


@dataclasses.dataclass(frozen=True, eq=False)
class History:
    """The training history of one run (host NumPy arrays).

    - `train_loss`: ``(epochs,)`` float64, each epoch's mean meta-step training loss;
    - `val_epoch`: ``(chunks,)`` int64, the epochs after which validation ran;
    - `val_error`: ``(chunks,)`` float64, the mean validation error at those epochs.

    Two histories are equal when their arrays are; `to_dict` gives the JSON-ready lists.
    """

    train_loss: Float[np.ndarray, " epochs"]
    val_epoch: Int[np.ndarray, " chunks"]
    val_error: Float[np.ndarray, " chunks"]

    def __post_init__(self):
        for name, dtype in (("train_loss", np.float64), ("val_epoch", np.int64),
                            ("val_error", np.float64)):  # fmt: skip
            value = np.asarray(getattr(self, name), dtype=dtype)
            if value.ndim != 1:
                raise ValueError(f"`{name}` must be one-dimensional, got shape {value.shape}.")
            object.__setattr__(self, name, value)
        if self.val_epoch.shape != self.val_error.shape:
            raise ValueError(
                f"`val_epoch` and `val_error` must have one entry per validation, got shapes "
                f"{self.val_epoch.shape} and {self.val_error.shape}."
            )

    @classmethod
    def empty(cls) -> "History":
        return cls(np.zeros(0), np.zeros(0, np.int64), np.zeros(0))

    @classmethod
    def from_dict(cls, record: dict) -> "History":
        """The inverse of `to_dict`."""
        return cls(record["train_loss"], record["val_epoch"], record["val_error"])

    def to_dict(self) -> dict[str, list]:
        """``{"train_loss": [...], "val_epoch": [...], "val_error": [...]}`` of Python
        floats and ints (JSON-serialisable)."""
        return {
            "train_loss": self.train_loss.tolist(),
            "val_epoch": self.val_epoch.tolist(),
            "val_error": self.val_error.tolist(),
        }

    def extend(self, train_loss, epoch: int, val_error: float) -> "History":
        """This history followed by one chunk: its epochs' losses, then one validation."""
        return History(
            np.concatenate([self.train_loss, np.asarray(train_loss, np.float64)]),
            np.append(self.val_epoch, epoch),
            np.append(self.val_error, val_error),
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
        )

    __hash__ = None


class TrainResult(eqx.Module):
    """What `fit` returns: the final and best-on-validation states (`state`, `best_state`),
    the epoch of the best (`best_epoch`, 0 if it never validated) and the `History`."""

    state: MetaState
    best_state: MetaState
    best_epoch: int
    history: History
