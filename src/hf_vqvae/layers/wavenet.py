"""The WaveNet (van den Oord et al. 2016, arXiv 1609.03499) as the package's autoregressive model over a waveform
of discrete samples, with cached sample-by-sample generation (Ramachandran et al. 2017, arXiv 1704.06001; "Fast
WaveNet", Paine et al. 2016).

Causality comes from left padding and a shifted input, not from masks: the input at time t is the embedding of the
sample at t - 1 (zeros at t = 0), and every dilated convolution of kernel k and dilation d reads times
t - (k - 1) d, ..., t - d, t of the layer below.

Conditioning enters every gate as a bias: a global vector per sequence (a speaker embedding) through a linear map,
and a local conditioning sequence (latents) through a 1x1 convolution. The local sequence comes at a lower rate,
one frame per `conditioning_hop` samples, and is upsampled by repetition *after* the 1x1 projection: the projection
is pointwise, so this equals projecting the repeated frames, and the cached generator keeps one bias per frame
rather than one per sample.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .gated_pixelcnn import gate
from .sampling import draw_from_logits


def dilations(num_layers: int, dilation_cycle: int, kernel_size: int = 2) -> list[int]:
    """Dilations kernel_size**0 ... kernel_size**(cycle - 1), repeated until `num_layers` layers."""
    return [kernel_size ** (index % dilation_cycle) for index in range(num_layers)]


def receptive_field(num_layers: int, dilation_cycle: int, kernel_size: int = 2) -> int:
    """How many past samples (the one being predicted excluded) one output can see: 1 through the shifted input,
    plus (kernel_size - 1) * dilation per layer."""
    return 1 + sum((kernel_size - 1) * dilation for dilation in dilations(num_layers, dilation_cycle, kernel_size))


class WaveNetBlock(nn.Module):
    """One residual block: gated dilated causal convolution, then a 1x1 convolution back to the residual stream
    and one to the skip connections."""

    def __init__(
        self,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int,
        kernel_size: int,
        dilation: int,
        conditioning_channels: int = 0,
        global_channels: int = 0,
        feeds_next_block: bool = True,
    ):
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.history = (kernel_size - 1) * dilation
        self.dilated_conv = nn.Conv1d(residual_channels, 2 * gate_channels, kernel_size, dilation=dilation)
        self.conditioning_projection = (
            nn.Conv1d(conditioning_channels, 2 * gate_channels, 1) if conditioning_channels else None
        )
        self.global_projection = nn.Linear(global_channels, 2 * gate_channels, bias=False) if global_channels else None
        # The last block's residual output would feed nothing: no parameters without gradients under DDP.
        self.residual = nn.Conv1d(gate_channels, residual_channels, 1) if feeds_next_block else None
        self.skip = nn.Conv1d(gate_channels, skip_channels, 1)

    def gate_bias(self, conditioning: torch.Tensor | None, global_conditioning: torch.Tensor | None) -> torch.Tensor | None:
        """(batch, 2 * gate_channels, frames) from the local conditioning, plus (batch, 2 * gate_channels, 1) from
        the global one; None for an unconditional block."""
        bias = None
        if self.conditioning_projection is not None:
            bias = self.conditioning_projection(conditioning)
        if self.global_projection is not None:
            global_bias = self.global_projection(global_conditioning).unsqueeze(-1)
            bias = global_bias if bias is None else bias + global_bias
        return bias

    def forward(self, hidden: torch.Tensor, gate_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole sequences (batch, residual_channels, time) in; the residual output and the skip out. `gate_bias`
        is already at the sample rate (or of length 1)."""
        pre_activation = self.dilated_conv(F.pad(hidden, (self.history, 0)))
        if gate_bias is not None:
            pre_activation = pre_activation + gate_bias
        gated = gate(pre_activation)
        if self.residual is not None:
            hidden = hidden + self.residual(gated)
        return hidden, self.skip(gated)


class WaveNet(nn.Module):
    """Embedding of the previous sample, `num_layers` residual blocks in cycles of dilations 1, k, k^2, ...,
    summed skips, then ReLU, 1x1, ReLU, 1x1 to `num_classes` logits per sample (a categorical over e.g. 256 mu-law
    levels).

    `forward` gives the logits of every sample at once (teacher forcing). `generate` draws a waveform sample by
    sample: by default with per-block queues of past inputs, so one new sample costs one position per block;
    `use_cache=False` runs the network over the receptive field for every sample (the reference). Both draw one
    uniform number per sequence and sample in the same order, so a seeded generator gives the same waveform.
    """

    def __init__(
        self,
        num_classes: int,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int,
        num_layers: int,
        dilation_cycle: int,
        kernel_size: int = 2,
        conditioning_channels: int = 0,
        conditioning_hop: int = 1,
        global_channels: int = 0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.conditioning_hop = conditioning_hop
        self.receptive_field = receptive_field(num_layers, dilation_cycle, kernel_size)
        self.input_embedding = nn.Embedding(num_classes, residual_channels)
        self.blocks = nn.ModuleList(
            WaveNetBlock(
                residual_channels, gate_channels, skip_channels, kernel_size, dilation, conditioning_channels,
                global_channels, feeds_next_block=index < num_layers - 1,
            )
            for index, dilation in enumerate(dilations(num_layers, dilation_cycle, kernel_size))
        )
        self.output_hidden = nn.Conv1d(skip_channels, skip_channels, 1)
        self.output_logits = nn.Conv1d(skip_channels, num_classes, 1)

    def gate_biases(self, conditioning: torch.Tensor | None, global_conditioning: torch.Tensor | None) -> list:
        """Every block's gate bias at the conditioning's frame rate (see `WaveNetBlock.gate_bias`)."""
        return [block.gate_bias(conditioning, global_conditioning) for block in self.blocks]

    def embed(self, samples: torch.LongTensor) -> torch.Tensor:
        """The network's input: the embedding of the previous sample, (batch, residual_channels, time)."""
        return F.pad(self.input_embedding(samples).transpose(1, 2), (1, 0))[:, :, :-1]

    def forward(
        self,
        samples: torch.LongTensor | None = None,
        conditioning: torch.Tensor | None = None,
        global_conditioning: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (batch, num_classes, time) of unchecked samples (batch, time): the logits at t see samples < t
        only. `inputs_embeds` (batch, residual_channels, time) replaces `embed(samples)` (e.g. to take gradients
        through the input). `conditioning` (batch, conditioning_channels, frames) must cover the time at
        `conditioning_hop` samples per frame."""
        hidden = self.embed(samples) if inputs_embeds is None else inputs_embeds
        length = hidden.shape[-1]
        skips = 0
        for block, bias in zip(self.blocks, self.gate_biases(conditioning, global_conditioning)):
            if bias is not None and bias.shape[-1] > 1:
                bias = bias.repeat_interleave(self.conditioning_hop, dim=-1)[..., :length]
            hidden, skip = block(hidden, bias)
            skips = skips + skip
        return self.output_logits(F.relu(self.output_hidden(F.relu(skips))))

    @torch.no_grad()
    def generate(
        self,
        batch_size: int,
        length: int,
        conditioning: torch.Tensor | None = None,
        global_conditioning: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
    ) -> torch.LongTensor:
        """(batch_size, length) samples drawn one at a time; arguments unchecked (the models check them).
        `progress_callback(samples_done, length)` is called every 1000 samples and at the end."""
        generate = self._generate_cached if use_cache else self._generate_plain
        return generate(batch_size, length, conditioning, global_conditioning, temperature, generator, progress_callback)

    def _generate_plain(
        self, batch_size, length, conditioning, global_conditioning, temperature, generator, progress_callback
    ) -> torch.LongTensor:
        """For every sample, the whole network over the `receptive_field` samples before it: the output at t depends
        on nothing earlier, and inside the window every value it depends on is computed from inputs in the window."""
        device = self.input_embedding.weight.device
        samples = torch.zeros(batch_size, length, dtype=torch.long, device=device)
        hop = self.conditioning_hop
        gate_biases = self.gate_biases(conditioning, global_conditioning)
        for time in range(length):
            start = max(0, time + 1 - self.receptive_field)
            # The window's first input is the embedding of the sample before it (zeros at the very start).
            hidden = self.embed(samples[:, max(0, start - 1) : time + 1])
            if start:
                hidden = hidden[:, :, 1:]
            skips = 0
            for block, bias in zip(self.blocks, gate_biases):
                if bias is not None and bias.shape[-1] > 1:
                    first_frame = start // hop
                    bias = bias[..., first_frame : time // hop + 1].repeat_interleave(hop, dim=-1)
                    bias = bias[..., start - first_frame * hop :][..., : time + 1 - start]
                hidden, skip = block(hidden, bias)
                skips = skips + skip
            logits = self.output_logits(F.relu(self.output_hidden(F.relu(skips[:, :, -1:]))))[:, :, 0]
            samples[:, time] = draw_from_logits(logits, temperature, generator)
            _report(progress_callback, time + 1, length)
        return samples

    def _generate_cached(
        self, batch_size, length, conditioning, global_conditioning, temperature, generator, progress_callback
    ) -> torch.LongTensor:
        """One position per block per sample, with the work per block cut to a few small operations (on a CPU the
        cost of a step is the number of operations, not their size; see `CachedBlock`)."""
        weight = self.input_embedding.weight
        hop = self.conditioning_hop
        blocks = [
            CachedBlock(block, bias, batch_size, length, hop)
            for block, bias in zip(self.blocks, self.gate_biases(conditioning, global_conditioning))
        ]
        # All blocks' skip convolutions as one matrix over their gated outputs (each followed by a 1 for the bias).
        skip_matrix = torch.cat(
            [torch.cat([block.skip.weight[:, :, 0], block.skip.bias[:, None]], dim=1) for block in self.blocks], dim=1
        ).t()
        gated_outputs = [cached.gated for cached in blocks]
        samples = torch.zeros(batch_size, length, dtype=torch.long, device=weight.device)
        hidden = torch.zeros(batch_size, weight.shape[1], device=weight.device, dtype=weight.dtype)
        for time in range(length):
            for cached in blocks:
                hidden = cached.step(hidden, time)
            skips = torch.cat(gated_outputs, dim=1).mm(skip_matrix)
            hidden_logits = F.relu(F.linear(F.relu(skips), self.output_hidden.weight[:, :, 0], self.output_hidden.bias))
            logits = F.linear(hidden_logits, self.output_logits.weight[:, :, 0], self.output_logits.bias)
            samples[:, time] = draw_from_logits(logits, temperature, generator)
            hidden = self.input_embedding(samples[:, time])
            _report(progress_callback, time + 1, length)
        return samples


class CachedBlock:
    """A `WaveNetBlock` prepared for sample-by-sample generation (Paine et al. 2016's queues, rearranged).

    Instead of keeping past inputs and gathering the kernel's taps, each input x_t is multiplied once by every tap's
    weights: the current tap's product enters the gate at t, the others are added into a queue slot for the times
    t + j * dilation that will read them. A slot is seeded with the gate bias of its time (convolution bias and
    conditioning), so that at time t the gate's pre-activation is one product plus one queue read. The gated output
    is written next to a constant 1, so one matrix product gives the residual with its bias (and, for all blocks at
    once, the skips). Zeros before the start are the zero padding of `forward`.

    On a CPU a step costs the number of tensor operations far more than their size, so every buffer and every view
    a step touches is made here, once, and the step writes into them with `out=`.
    """

    def __init__(self, block: WaveNetBlock, gate_bias: torch.Tensor | None, batch_size: int, length: int, hop: int):
        weight = block.dilated_conv.weight  # (2 * gate, residual, kernel)
        factory = dict(device=weight.device, dtype=weight.dtype)
        kernel, channels = block.kernel_size, weight.shape[0]
        self.dilation, self.history, self.hop = block.dilation, block.history, hop
        # Taps newest first: x_t reaches the gate at t + j * dilation through the tap kernel - 1 - j.
        self.tap_matrix = torch.cat([weight[:, :, kernel - 1 - j] for j in range(kernel)]).t().contiguous()
        self.products = torch.empty(batch_size, kernel * channels, **factory)
        self.taps = [self.products[:, channels * j : channels * (j + 1)] for j in range(kernel)]
        # (frames, batch, 2 * gate): the per-time bias, one frame per `hop` samples, or one frame for all times.
        bias = block.dilated_conv.bias[None, None, :].expand(1, batch_size, -1)
        if gate_bias is not None:
            bias = bias + (gate_bias.permute(2, 0, 1) if gate_bias.shape[-1] > 1 else gate_bias[:, :, 0][None])
        self.bias_frames = list(bias.contiguous().unbind(0))
        self.queue = torch.stack([self.bias_at(time) for time in range(self.history)])
        self.slots = list(self.queue.unbind(0))
        self.pre_activation = torch.empty(batch_size, channels, **factory)
        self.content, self.gate = self.pre_activation.chunk(2, dim=1)
        self.content_tanh = torch.empty(batch_size, channels // 2, **factory)
        self.gate_sigmoid = torch.empty(batch_size, channels // 2, **factory)
        self.gated = torch.ones(batch_size, channels // 2 + 1, **factory)
        self.gated_values = self.gated[:, :-1]
        self.residual_matrix = None
        if block.residual is not None:
            self.residual_matrix = torch.cat([block.residual.weight[:, :, 0], block.residual.bias[:, None]], dim=1).t()

    def bias_at(self, time: int) -> torch.Tensor:
        return self.bias_frames[min(time // self.hop, len(self.bias_frames) - 1)]

    def step(self, hidden: torch.Tensor, time: int) -> torch.Tensor:
        """The block's residual output at `time` from its input `hidden` (batch, residual_channels); the gated output
        is left in `self.gated`."""
        torch.mm(hidden, self.tap_matrix, out=self.products)
        slot = time % self.history
        torch.add(self.taps[0], self.slots[slot], out=self.pre_activation)
        # The slot now serves time + history, reached by the oldest tap.
        torch.add(self.taps[-1], self.bias_at(time + self.history), out=self.slots[slot])
        for j in range(1, len(self.taps) - 1):
            self.slots[(time + j * self.dilation) % self.history].add_(self.taps[j])
        torch.tanh(self.content, out=self.content_tanh)
        torch.sigmoid(self.gate, out=self.gate_sigmoid)
        torch.mul(self.content_tanh, self.gate_sigmoid, out=self.gated_values)
        if self.residual_matrix is None:
            return hidden
        return torch.addmm(hidden, self.gated, self.residual_matrix)


def _report(progress_callback, done: int, total: int) -> None:
    if progress_callback is not None and (done % 1000 == 0 or done == total):
        progress_callback(done, total)
