"""A watch on the codebook during training: a warning in the training log when code usage collapses (the batches
use only a handful of codes, so the decoder gets the same few codes for every input and learns to ignore them),
and a line when it recovers."""

import logging


logger = logging.getLogger(__name__)

# Collapsed: the batch perplexity of the codes stays below this share of the codes a batch could use.
COLLAPSE_FRACTION = 0.1
# ... for this many updates in a row (one batch can be unlucky; k-means or restarts need a few updates to act).
COLLAPSE_PATIENCE = 10


class CodeUsageWatch:
    """Call `update(perplexity, latents)` once per optimizer update with the batch's code perplexity (over all
    processes) and the number of latents it quantized; logs a warning once the perplexity has stayed below
    `COLLAPSE_FRACTION` x min(K, latents) for `COLLAPSE_PATIENCE` updates, and an info line when it climbs back.

    Args:
        num_embeddings: K, the codebook size.
        hint: what to check, appended to the warning (the recipe's likely causes).
        enabled: log only on the main process (the perplexity is the same on every process).
    """

    def __init__(self, num_embeddings: int, hint: str = "", enabled: bool = True):
        self.num_embeddings = num_embeddings
        self.hint = hint
        self.enabled = enabled
        self.updates = 0
        self.low_updates = 0
        self.collapsed = False

    def update(self, perplexity: float, latents: int) -> None:
        self.updates += 1
        floor = COLLAPSE_FRACTION * min(self.num_embeddings, latents)
        self.low_updates = self.low_updates + 1 if perplexity < floor else 0
        if not self.collapsed and self.low_updates >= COLLAPSE_PATIENCE:
            self.collapsed = True
            if self.enabled:
                logger.warning(
                    "code usage collapsed: for the last %d updates (up to update %d of this run) the batches' codes had a "
                    "perplexity below %.1f (now %.1f, of K=%d codes and %d latents per batch), so the decoder gets "
                    "nearly the same codes whatever its input and learns to ignore them.%s",
                    self.low_updates, self.updates, floor, perplexity, self.num_embeddings, latents,
                    f" {self.hint}" if self.hint else "",
                )
        elif self.collapsed and perplexity >= floor:
            self.collapsed = False
            if self.enabled:
                logger.info(
                    "code usage recovered at update %d of this run: perplexity %.1f of K=%d", self.updates, perplexity,
                    self.num_embeddings,
                )


__all__ = ["CodeUsageWatch"]
