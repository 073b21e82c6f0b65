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
from time import perf_counter

import torch
import torch.nn.functional as F
from torch import nn

from . import fused_steps
from .gates import gate, glu
from .sampler_threads import SINGLE_THREAD_FUSED_STEP_MACS, SINGLE_THREAD_STEP_MACS, ThreadPolicy
from .sampling import draw_from_logits, uniform_numbers


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
        hidden_states: list | None = None,
    ) -> torch.Tensor:
        """Logits (batch, num_classes, time) of unchecked samples (batch, time): the logits at t see samples < t
        only. `inputs_embeds` (batch, residual_channels, time) replaces `embed(samples)` (e.g. to take gradients
        through the input). `conditioning` (batch, conditioning_channels, frames) must cover the time at
        `conditioning_hop` samples per frame. When a list is given as `hidden_states`, the input and each block's
        residual output (batch, residual_channels, time) are appended to it."""
        hidden = self.embed(samples) if inputs_embeds is None else inputs_embeds
        length = hidden.shape[-1]
        if hidden_states is not None:
            hidden_states.append(hidden)
        skips = 0
        for block, bias in zip(self.blocks, self.gate_biases(conditioning, global_conditioning)):
            if bias is not None and bias.shape[-1] > 1:
                bias = bias.repeat_interleave(self.conditioning_hop, dim=-1)[..., :length]
            hidden, skip = block(hidden, bias)
            skips = skips + skip
            if hidden_states is not None:
                hidden_states.append(hidden)
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
        gate_biases = self.gate_biases(conditioning, global_conditioning)
        for time in range(length):
            samples[:, time] = draw_from_logits(self.plain_step(samples, time, gate_biases), temperature, generator)
            _report(progress_callback, time + 1, length)
        return samples

    def plain_step(self, samples: torch.LongTensor, time: int, gate_biases: list) -> torch.Tensor:
        """The plain generator's step: the (batch, num_classes) logits at `time` of `samples` (batch, >= time), from
        the whole network over the `receptive_field` samples before it. `gate_biases` are `gate_biases(...)`'s."""
        hop = self.conditioning_hop
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
        return self.output_logits(F.relu(self.output_hidden(F.relu(skips[:, :, -1:]))))[:, :, 0]

    def _generate_cached(
        self, batch_size, length, conditioning, global_conditioning, temperature, generator, progress_callback
    ) -> torch.LongTensor:
        """One position per block per sample (see `CachedWaveNetGenerator`)."""
        cached = CachedWaveNetGenerator(self, batch_size, length, conditioning, global_conditioning)
        return cached.generate(temperature, generator, progress_callback)


class CachedWaveNetGenerator:
    """A `WaveNet` prepared for sample-by-sample generation (Paine et al. 2016's queues, rearranged), for one batch
    size and length; the model must not change meanwhile.

    Instead of keeping past inputs and gathering the kernel's taps, each block's input x_t is multiplied once by every
    tap's weights: the current tap's product enters the gate at t, the others are added into a queue slot for the times
    t + j * dilation that will read them. A slot is seeded with the gate bias of its time (convolution bias and
    conditioning), so that at time t the gate's pre-activation is one product added to one queue slot (one `addmm`).
    Each block's gated output is written next to a constant 1, so one product gives the residual with its bias, and
    one product over all blocks' gated outputs gives the summed skips with theirs. Zeros before the start are the
    zero padding of `forward`.

    On a CPU a step costs the number of tensor operations far more than their size (about five per block here), so
    every buffer and every view a step touches is made here, once, and the step writes into them with `out=`. For
    float32 on a CPU the whole step, output layers and draw included, is one call of a compiled function on the same
    buffers (`fused_steps`).
    """

    def __init__(
        self,
        wavenet: WaveNet,
        batch_size: int,
        length: int,
        conditioning: torch.Tensor | None,
        global_conditioning: torch.Tensor | None,
    ):
        self.embedding = wavenet.input_embedding.weight
        factory = dict(device=self.embedding.device, dtype=self.embedding.dtype)
        self.batch_size, self.length, self.hop = batch_size, length, wavenet.conditioning_hop
        blocks = wavenet.blocks
        num_blocks, residual_channels = len(blocks), self.embedding.shape[1]
        gate_channels, skip_channels = blocks[0].skip.in_channels, blocks[0].skip.out_channels

        # Block i reads inputs[i] and writes its residual output into inputs[i + 1]; inputs[0] is the embedding of the
        # previous sample (zeros at t = 0).
        self.inputs = torch.zeros(num_blocks, batch_size, residual_channels, **factory)
        # Every block's gated output, then a constant 1 for the residual and skip biases.
        self.gated = torch.ones(batch_size, num_blocks, gate_channels + 1, **factory)
        self.flat_gated = self.gated.view(batch_size, num_blocks * (gate_channels + 1))
        self.pre_activation = torch.empty(batch_size, 2 * gate_channels, **factory)
        self.content = self.pre_activation[:, :gate_channels]
        self.blocks = [
            CachedBlock(block, bias, self.inputs, index, self.gated, batch_size, self.hop)
            for index, (block, bias) in enumerate(zip(blocks, wavenet.gate_biases(conditioning, global_conditioning)))
        ]
        self.skips = torch.empty(batch_size, skip_channels, **factory)
        self.hidden = torch.empty(batch_size, skip_channels, **factory)
        self.logits = torch.empty(batch_size, wavenet.num_classes, **factory)
        self.samples = torch.zeros(batch_size, length, dtype=torch.long, device=self.embedding.device)
        usable = fused_steps.usable_for(*wavenet.parameters(), *(block.bias_queue for block in self.blocks))
        self.fused = self.fused_step(wavenet) if usable else None
        if self.fused is None:
            self.prepare_eager(wavenet)
        per_block = residual_channels * 2 * gate_channels * blocks[0].kernel_size + gate_channels * (
            residual_channels + skip_channels
        )
        self.step_macs = batch_size * (
            num_blocks * per_block + skip_channels * (skip_channels + wavenet.num_classes)
        )

    def prepare_eager(self, wavenet: WaveNet) -> None:
        """The weights of the eager `step`, where the compiled one cannot run."""
        for block in self.blocks:
            block.prepare_eager()
        # All blocks' skip convolutions as one (num_blocks * (gate_channels + 1), skip_channels) matrix, stored as the
        # transpose of a row-major one: at batch 1 the product then reads every output's weights as one run (measured
        # here: half the time of the row-major layout once the matrix outgrows the cache).
        self.skip_matrix = torch.cat([_with_bias(block.skip).t() for block in wavenet.blocks], dim=1).t()
        self.output_hidden = (wavenet.output_hidden.weight[:, :, 0].t(), wavenet.output_hidden.bias)
        self.output_logits = (wavenet.output_logits.weight[:, :, 0].t(), wavenet.output_logits.bias)

    def fused_step(self, wavenet: WaveNet) -> fused_steps.FusedStep:
        """The compiled step (`fused_steps.cpp`) on this generator's buffers and queues."""
        weights = fused_steps.prepared_weights(wavenet, fused_weights)
        step = fused_steps.FusedStep()
        self.uniform = torch.empty(self.batch_size, 1)
        kernel, gate_width = wavenet.blocks[0].kernel_size, self.pre_activation.shape[1]
        blocks = [
            step.structure(
                fused_steps.WaveNetBlockStep,
                kernel=block.kernel, dilation=block.dilation, history=block.history, frames=block.bias_queue.shape[0],
                taps=taps, slots=block.slot_queue, bias_frames=block.bias_queue, residual_weight=residual,
            )
            for block, taps, residual in zip(self.blocks, weights["taps"], weights["residual"])
        ]  # fmt: skip
        return step.bind(
            "wavenet_step", fused_steps.WaveNetStep,
            batch=self.batch_size, residual_channels=self.embedding.shape[1], gate_channels=gate_width // 2,
            blocks=len(blocks), hop=self.hop, length=self.length, threads=1, embedding=weights["embedding"],
            samples=self.samples, block=step.array(fused_steps.WaveNetBlockStep, blocks), inputs=self.inputs,
            gated=self.gated, products=torch.empty(self.batch_size, kernel * gate_width),
            pre_activation=self.pre_activation,
            output=step.output_layers(weights, (self.skips, self.hidden, self.logits), self.uniform),
        )  # fmt: skip

    def step(self, time: int) -> torch.Tensor:
        """Every block at `time` from the input in `inputs[0]`, then the output layers: the (batch, classes) logits."""
        for block in self.blocks:
            block.step(time, self.pre_activation, self.content)
        torch.mm(self.flat_gated, self.skip_matrix, out=self.skips)
        self.skips.relu_()
        torch.addmm(self.output_hidden[1], self.skips, self.output_hidden[0], out=self.hidden)
        self.hidden.relu_()
        return torch.addmm(self.output_logits[1], self.hidden, self.output_logits[0], out=self.logits)

    def generate(
        self,
        temperature: float,
        generator: torch.Generator | None,
        progress_callback: Callable[[int, int], None] | None,
    ) -> torch.LongTensor:
        threads = torch.get_num_threads()
        # Small steps run on one thread; larger ones on the count that a trial on the first steps found faster (the
        # steps are identical units of work), see `ThreadPolicy`. The compiled step splits the batch, so it uses no more
        # threads than there are sequences.
        if self.fused is not None:
            threads = min(threads, self.batch_size)
            several = threads > 1 and self.step_macs >= SINGLE_THREAD_FUSED_STEP_MACS
        else:
            several = threads > 1 and self.embedding.device.type == "cpu" and self.step_macs >= SINGLE_THREAD_STEP_MACS
        policy = ThreadPolicy(threads if several else 1)
        if self.fused is not None:
            description = self.fused.description
            description.output.temperature = temperature
            for time in range(self.length):
                description.threads = count = policy.threads_for(time)
                start = perf_counter()
                uniform_numbers(self.batch_size, generator, self.uniform.device, out=self.uniform)
                self.fused(time)
                policy.record(time, count, perf_counter() - start)
                _report(progress_callback, time + 1, self.length)
            return self.samples
        samples = self.samples
        samples_at = samples.unbind(1)
        first_inputs = self.inputs[0]
        running = None
        try:
            for time in range(self.length):
                count = policy.threads_for(time)
                if count != running:
                    torch.set_num_threads(count)
                    running = count
                start = perf_counter()
                drawn = draw_from_logits(self.step(time), temperature, generator)
                policy.record(time, count, perf_counter() - start)
                samples_at[time].copy_(drawn)
                torch.index_select(self.embedding, 0, drawn, out=first_inputs)
                _report(progress_callback, time + 1, self.length)
        finally:
            torch.set_num_threads(threads)
        return samples


def fused_weights(wavenet: WaveNet) -> dict:
    """A `WaveNet`'s weights as the compiled step reads them: contiguous (inputs, outputs) matrices (see
    `fused_steps.prepared_weights`). A block's taps are one (residual, kernel * 2 gate) matrix, tap j (newest first)
    the kernel's column kernel - 1 - j."""
    blocks = wavenet.blocks
    return {
        "embedding": wavenet.input_embedding.weight.contiguous(),
        "taps": [
            torch.cat([block.dilated_conv.weight[:, :, block.kernel_size - 1 - j].t() for j in range(block.kernel_size)],
                      dim=1)
            for block in blocks
        ],
        "residual": [
            None if block.residual is None else fused_steps.matrix_with_bias(block.residual) for block in blocks
        ],
        **fused_steps.output_weights([block.skip for block in blocks], wavenet.output_hidden, wavenet.output_logits),
    }  # fmt: skip


def _with_bias(conv: nn.Conv1d) -> torch.Tensor:
    """A 1x1 convolution as an (in + 1, out) matrix for inputs followed by a constant 1."""
    return torch.cat([conv.weight[:, :, 0], conv.bias[:, None]], dim=1).t()


class CachedBlock:
    """One `WaveNetBlock` of a `CachedWaveNetGenerator`: its tap products, its queue of gate pre-activations of the
    next `history` times, and the views of the generator's buffers it reads and writes."""

    def __init__(
        self,
        block: WaveNetBlock,
        gate_bias: torch.Tensor | None,
        inputs: torch.Tensor,
        index: int,
        gated: torch.Tensor,
        batch_size: int,
        hop: int,
    ):
        self.block, self.index = block, index
        self.kernel, self.dilation, self.history, self.hop = block.kernel_size, block.dilation, block.history, hop
        # (frames, batch, 2 * gate): the per-time bias, one frame per `hop` samples, or one frame for all times.
        bias = block.dilated_conv.bias[None, None, :].expand(1, batch_size, -1)
        if gate_bias is not None:
            bias = bias + (gate_bias.permute(2, 0, 1) if gate_bias.shape[-1] > 1 else gate_bias[:, :, 0][None])
        self.bias_queue = bias.contiguous()
        # (history, batch, 2 * gate): slot t % history holds what earlier times queued for time t, seeded with its bias.
        frames = (torch.arange(self.history, device=bias.device) // hop).clamp_(max=self.bias_queue.shape[0] - 1)
        self.slot_queue = self.bias_queue[frames]
        self.input = inputs[index]
        self.gated = gated[:, index, :-1]
        self.gated_with_one = gated[:, index]
        self.next_input = inputs[index + 1] if block.residual is not None else None

    def prepare_eager(self) -> None:
        """The weights and views of the eager `step`, where the compiled one cannot run."""
        self.bias_frames = list(self.bias_queue.unbind(0))
        self.slots = list(self.slot_queue.unbind(0))
        weight = self.block.dilated_conv.weight  # (2 * gate, residual, kernel)
        kernel, channels, batch_size = self.kernel, weight.shape[0], self.input.shape[0]
        # Tap j (newest first) carries x_t to the gate at t + j * dilation: the kernel's column kernel - 1 - j. Every
        # matrix is the transpose of a row-major (out, in) one, like the skips' below: a column of the kernel is strided
        # in both dimensions, and a matrix product would copy it at every call.
        self.current_tap = weight[:, :, kernel - 1].contiguous().t()
        self.future_taps = torch.cat([weight[:, :, kernel - 1 - j] for j in range(1, kernel)]).t()
        self.products = weight.new_empty(batch_size, (kernel - 1) * channels)
        self.future_products = [self.products[:, channels * j : channels * (j + 1)] for j in range(kernel - 1)]
        self.residual = None
        if self.block.residual is not None:
            self.residual = (_with_bias(self.block.residual), self.next_input)

    def bias_at(self, time: int) -> torch.Tensor:
        return self.bias_frames[min(time // self.hop, len(self.bias_frames) - 1)]

    def step(self, time: int, pre_activation: torch.Tensor, content: torch.Tensor) -> None:
        """The block at `time`: its gated output into the generator's `gated`, its residual output into the next
        block's input. `pre_activation` is scratch space, `content` its first half."""
        slot = self.slots[time % self.history]
        torch.addmm(slot, self.input, self.current_tap, out=pre_activation)
        # The slot now serves time + history, reached by the oldest tap; middle taps add into the slots between.
        if self.kernel == 2:
            torch.addmm(self.bias_at(time + self.history), self.input, self.future_taps, out=slot)
        else:
            torch.mm(self.input, self.future_taps, out=self.products)
            torch.add(self.future_products[-1], self.bias_at(time + self.history), out=slot)
            for j in range(1, self.kernel - 1):
                self.slots[(time + j * self.dilation) % self.history].add_(self.future_products[j - 1])
        content.tanh_()
        glu(pre_activation, 1, out=self.gated)
        if self.residual is not None:
            residual_matrix, next_input = self.residual
            torch.addmm(self.input, self.gated_with_one, residual_matrix, out=next_input)


def _report(progress_callback, done: int, total: int) -> None:
    if progress_callback is not None and (done % 1000 == 0 or done == total):
        progress_callback(done, total)
