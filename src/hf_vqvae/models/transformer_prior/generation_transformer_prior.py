"""What `TransformerPriorModel.sample` adds to transformers' `generate()`: a draw from the caller's generator, and
progress by rows of the code grid."""

from collections.abc import Callable

import torch
from transformers import LogitsProcessor
from transformers.generation.streamers import BaseStreamer

from ...layers.sampling import draw_from_logits


class DrawFromGenerator(LogitsProcessor):
    r"""
    The last logits processor of a sampling `generate()` run in greedy mode: it draws the next code from the processed
    scores with the caller's `torch.Generator` (or one generator per sequence) and leaves the drawn code the only
    finite score, so greedy search takes it.

    `generate(do_sample=True)` draws with `torch.multinomial` from the global random state, which neither takes a
    generator nor gives sequence i the draws of a batch of one. This draws as every sampler of the package does
    (`layers.sampling.draw_from_logits`: one uniform number per sequence and step, by inverse CDF), so a seeded
    generator gives the same codes with and without the KV cache, and a list of generators gives grid i what a batch of
    one draws with generator i.

    Args:
        generator (`torch.Generator`, a list of them, or `None`): the source of randomness (None: the global one).
    """

    def __init__(self, generator: torch.Generator | list[torch.Generator] | None):
        self.generator = generator

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        drawn = draw_from_logits(scores, 1.0, self.generator)
        only_drawn = torch.full_like(scores, -float("inf"))
        return only_drawn.scatter_(1, drawn[:, None], 0.0)


class RowProgress(BaseStreamer):
    """A `generate()` streamer that calls `callback(rows_done, grid_height)` each time a row of the grid is complete
    (generate hands it the prompt first, then each step's codes)."""

    def __init__(self, grid_height: int, grid_width: int, callback: Callable[[int, int], None]):
        self.grid_height, self.grid_width, self.callback = grid_height, grid_width, callback
        self.prompt_seen, self.codes_done = False, 0

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.codes_done += 1
        if self.codes_done % self.grid_width == 0:
            self.callback(self.codes_done // self.grid_width, self.grid_height)

    def end(self) -> None:
        pass


__all__ = ["DrawFromGenerator", "RowProgress"]
