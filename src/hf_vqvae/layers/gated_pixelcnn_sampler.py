"""The cached incremental sampler of `GatedPixelCNN` (Ramachandran et al. 2017, arXiv 1704.06001), laid out so that
each sampled position costs a few large operations on preallocated buffers.

The vertical stack at row r reads rows < r only (after the first layer's down-shift), so it is computed once per row,
for the whole row at once, from a ring of each layer's last `half_kernel + 1` vertical input rows. The horizontal stack
at a position reads that row's vertical features and each layer's last `half_kernel + 1` horizontal inputs in the
current row. Per position and layer this leaves one matrix product for the horizontal convolution, the gate,
and one product for the residual convolution; the skips of all layers go through a single product at the end.

How the work is laid out, and why:
- No concatenated windows. The horizontal inputs of a row are written into a buffer of the row's (left-padded)
  columns, where the window of every column is a (batch, taps * channels) matrix view made before the first step; the
  vertical inputs go into a ring of `half_kernel + 1` rows whose oldest slot each new row overwrites.
- The vertical convolution is a matrix product over a channel-last im2col of the ring (one copy per kernel row, per
  layer and row), with positions as rows ordered (column, grid) so that each column's vertical contribution to the horizontal
  stack is a contiguous (batch, channels) block.
- Biases ride inside the products: the horizontal convolution's bias, the vertical-to-horizontal bias and the
  horizontal gate bias are added to the vertical contribution once per row; the residual and skip biases are rows of
  their weights, multiplied by a constant 1 kept next to each layer's gated activations.
- Every intermediate lives in a buffer allocated before the first row and written with `out=`; every view a step
  reads or writes is made before the first row too.
- On a CPU, for float32, a row and a position are each one call of a compiled function on these same buffers
  (`fused_steps.cpp`: the vertical stack of every layer, then the horizontal stack, the output layers and the draw),
  instead of tens of torch operations; `vertical_row` and `horizontal_step` are the eager step, which runs elsewhere.

The arithmetic is the full-grid forward's, in another order, so the logits agree with the plain sampler's to float
rounding and a seeded generator draws the same codes (see `GatedPixelCNN.draw`).
"""

import time
from collections.abc import Callable

import torch
from torch import nn

from . import fused_steps
from .gates import glu
from .sampler_threads import SINGLE_THREAD_FUSED_STEP_MACS, SINGLE_THREAD_STEP_MACS, ThreadPolicy
from .sampling import uniform_numbers


def _bias_rows(gate_bias: torch.Tensor | None, half: slice, width: int, batch_size: int, factory: dict) -> torch.Tensor:
    """One half of a layer's (batch, 4 * channels, rows, 1 or width) gate bias as (rows, width, batch, 2 * channels):
    rows is the grid's height for a conditioning map, 1 for a bias that is the same everywhere (a class's, or none:
    zeros)."""
    if gate_bias is None:
        return torch.zeros(1, width, batch_size, half.stop - half.start, **factory)
    return gate_bias[:, half].permute(2, 3, 0, 1).expand(-1, width, -1, -1).contiguous()


def fused_weights(pixelcnn: nn.Module) -> dict[str, torch.Tensor]:
    """A `GatedPixelCNN`'s weights as the compiled step reads them: contiguous (inputs, outputs) matrices stacked
    over layers, each made with one copy (see `fused_steps.prepared_weights`)."""
    layers = pixelcnn.layers

    def stacked(weights: list[torch.Tensor], *order: int) -> torch.Tensor:
        return torch.stack(weights).permute(*order).contiguous()

    residuals = [layer.horizontal_residual for layer in layers if layer.horizontal_residual is not None]
    return {
        "embedding": pixelcnn.code_embedding.weight.contiguous(),
        # (2C, C, taps, kernel) -> (taps, kernel, C, 2C): the im2col's order
        "vertical": stacked([layer.vertical_conv.weight for layer in layers], 0, 3, 4, 2, 1),
        "vertical_biases": torch.stack([layer.vertical_conv.bias for layer in layers]),
        "vertical_to_horizontal": stacked([layer.vertical_to_horizontal.weight.flatten(1) for layer in layers], 0, 2, 1),
        # (2C, C, taps) -> (taps, C, 2C): a window holds its columns one after the other
        "horizontal": stacked([layer.horizontal_conv.weight[:, :, 0] for layer in layers], 0, 3, 2, 1),
        # (layer, C + 1, C)
        "residual": torch.stack([fused_steps.matrix_with_bias(conv) for conv in residuals]) if residuals
        else torch.empty(0),
        **fused_steps.output_weights([layer.skip for layer in layers], pixelcnn.output_hidden, pixelcnn.output_logits),
    }


class CachedGatedPixelCNNSampler:
    """Draws (batch_size, height, width) code grids from a `GatedPixelCNN` in raster order, one call of `sample`.
    Holds the laid-out weights and every buffer for one grid size and batch; the model must not change meanwhile."""

    def __init__(
        self,
        pixelcnn: nn.Module,
        batch_size: int,
        height: int,
        width: int,
        class_labels: torch.Tensor | None,
        conditioning: torch.Tensor | None,
    ):
        self.pixelcnn = pixelcnn
        self.batch_size, self.height, self.width = batch_size, height, width
        self.embedding = embedding = pixelcnn.code_embedding.weight
        layers = pixelcnn.layers
        channels = embedding.shape[1]
        self.half = half = layers[0].half_kernel
        self.taps, self.kernel = taps, kernel = half + 1, 2 * half + 1
        self.num_layers = num_layers = len(layers)
        factory = dict(device=embedding.device, dtype=embedding.dtype)
        skip_channels = pixelcnn.output_hidden.in_channels

        # Every layer's gate biases, (layer, rows, column, grid, 2 * channels): rows is the grid's height for a
        # conditioning map, 1 for a class's bias or none. The horizontal stack's carry its convolution's and the
        # vertical-to-horizontal convolution's biases too.
        content, gate = slice(0, 2 * channels), slice(2 * channels, 4 * channels)
        gate_biases = list(pixelcnn.gate_biases(class_labels, conditioning))
        self.horizontal_biases = torch.stack([
            _bias_rows(gate_bias, gate, width, batch_size, factory)
            + (layer.vertical_to_horizontal.bias + layer.horizontal_conv.bias)
            for layer, gate_bias in zip(layers, gate_biases)
        ])  # fmt: skip
        self.vertical_gate_biases = None
        if gate_biases[0] is not None:
            self.vertical_gate_biases = torch.stack(
                [_bias_rows(gate_bias, content, width, batch_size, factory) for gate_bias in gate_biases]
            )

        # Vertical rings: (layer, slot, padded column, grid, channel); the padding columns stay zero.
        padded_width = width + 2 * half
        self.vertical_rings = torch.zeros(num_layers, taps, padded_width, batch_size, channels, **factory)
        # The im2col of a row: (column, grid, kernel row, kernel column, in), the vertical weight's order.
        self.columns = torch.empty(width, batch_size, taps, kernel, channels, **factory)
        self.vertical_pre_activation = torch.empty(width * batch_size, 2 * channels, **factory)
        self.to_horizontal = torch.empty(num_layers, width, batch_size, 2 * channels, **factory)
        # Horizontal inputs of the current row: (layer, grid, left padding + column, channel); the padding stays zero
        # and every other column is written before it is read.
        self.horizontal_inputs = torch.zeros(num_layers, batch_size, half + width, channels, **factory)
        # Each layer's gated activations at the current position, then a constant 1 for the biases.
        self.gated = torch.ones(batch_size, num_layers, channels + 1, **factory)
        self.horizontal_pre_activation = torch.empty(batch_size, 2 * channels, **factory)
        self.skips = torch.empty(batch_size, skip_channels, **factory)
        self.hidden = torch.empty(batch_size, skip_channels, **factory)
        self.logits = torch.empty(batch_size, pixelcnn.num_embeddings, **factory)
        self.codes = torch.zeros(batch_size, height, width, dtype=torch.long, device=embedding.device)

        step_macs = num_layers * (taps * channels * 2 * channels + channels * channels + channels * skip_channels)
        self.step_macs = batch_size * (step_macs + skip_channels * (skip_channels + pixelcnn.num_embeddings))
        usable = fused_steps.usable_for(*pixelcnn.parameters(), self.horizontal_biases)
        self.fused = self.fused_step() if usable else None
        if self.fused is None:
            self.prepare_eager()

    def fused_step(self) -> fused_steps.FusedStep:
        """The compiled row and step (`fused_steps.cpp`) on this sampler's buffers: every operation of a row's vertical
        stack in one call, and of a position's horizontal stack, output layers and draw in another."""
        step = fused_steps.FusedStep()
        self.uniform = torch.empty(self.batch_size, 1, dtype=self.embedding.dtype)
        weights = fused_steps.prepared_weights(self.pixelcnn, fused_weights)
        return step.bind(
            "pixelcnn_step", fused_steps.PixelCNNStep,
            batch=self.batch_size, channels=self.embedding.shape[1], kernel=self.kernel, layers=self.num_layers,
            height=self.height, width=self.width, bias_rows=self.horizontal_biases.shape[1], threads=1, step_threads=1,
            embedding=weights["embedding"], codes=self.codes, rings=self.vertical_rings, columns=self.columns,
            vertical_weights=weights["vertical"], vertical_biases=weights["vertical_biases"],
            vertical_gate_biases=self.vertical_gate_biases, vertical_pre_activation=self.vertical_pre_activation,
            vertical_to_horizontal=weights["vertical_to_horizontal"], horizontal_biases=self.horizontal_biases,
            to_horizontal=self.to_horizontal, inputs=self.horizontal_inputs, horizontal_weights=weights["horizontal"],
            residual_weights=weights["residual"], gated=self.gated, pre_activation=self.horizontal_pre_activation,
            output=step.output_layers(weights, (self.skips, self.hidden, self.logits), self.uniform),
        )  # fmt: skip

    def prepare_eager(self) -> None:
        """The weights and views of the eager row and step (`vertical_row`, `horizontal_step`), where the compiled
        ones cannot run."""
        pixelcnn, layers, channels = self.pixelcnn, self.pixelcnn.layers, self.embedding.shape[1]
        batch_size, width, num_layers = self.batch_size, self.width, self.num_layers
        half, taps, kernel = self.half, self.taps, self.kernel

        # Every product reads its weight as the transpose of a (out, in) matrix: a view of the convolution's weight
        # where the inputs can be laid out in its order, so that preparing a call copies little.
        def matrix(conv: nn.Conv2d) -> torch.Tensor:  # (in * kernel positions, out), rows ordered (in, row, column)
            return conv.weight.flatten(1).t()

        def with_bias(conv: nn.Conv2d) -> torch.Tensor:  # (in + 1, out) for inputs followed by a constant 1
            return torch.cat([conv.weight.flatten(1), conv.bias[:, None]], dim=1).t()

        self.vertical_weights, self.vertical_biases, self.vertical_to_horizontal = [], [], []
        self.horizontal_weights, self.residual_weights = [], []
        for layer in layers:
            # The im2col below is channel-last, so that it copies runs of channels rather than single numbers: the
            # vertical weight's rows are reordered (row, column, in) once per call.
            vertical = layer.vertical_conv.weight.permute(0, 2, 3, 1).reshape(2 * channels, taps * kernel * channels)
            self.vertical_weights.append(vertical.t())
            self.vertical_biases.append(layer.vertical_conv.bias)
            self.vertical_to_horizontal.append(matrix(layer.vertical_to_horizontal))
            # A window holds its columns one after the other: rows ordered (column, in), hence the one copy.
            horizontal = layer.horizontal_conv.weight[:, :, 0].transpose(1, 2).reshape(2 * channels, taps * channels)
            self.horizontal_weights.append(horizontal.t())
            if layer.horizontal_residual is not None:
                self.residual_weights.append(with_bias(layer.horizontal_residual))
        # All skips in one product: (num_layers * (channels + 1), skip_channels), each layer's bias after its weights,
        # stored as the transpose of a row-major matrix like every other weight here: at batch 1 the product then reads
        # each output's weights as one run (measured: up to half the time of the row-major layout once the matrix
        # outgrows the cache).
        self.skip_weight = torch.cat([with_bias(layer.skip).t() for layer in layers], dim=1).t()
        self.output_hidden = (matrix(pixelcnn.output_hidden), pixelcnn.output_hidden.bias)
        self.output_logits = (matrix(pixelcnn.output_logits), pixelcnn.output_logits.bias)

        # Views, made once.
        stride = self.vertical_rings.stride()
        self.ring_columns = [  # slot s of layer l's ring as (column, grid, dx, channel): one kernel row's im2col
            [
                self.vertical_rings[index, slot].as_strided(
                    (width, batch_size, kernel, channels), (stride[2], stride[3], stride[2], stride[4])
                )
                for slot in range(taps)
            ]
            for index in range(num_layers)
        ]
        self.columns_at = self.columns.unbind(2)
        self.ring_rows = [  # the unpadded columns of each layer's ring slot, as (column * grid, channel)
            [ring[half : half + width].view(width * batch_size, channels) for ring in rings.unbind(0)]
            for rings in self.vertical_rings.unbind(0)
        ]
        self.flat_columns = self.columns.view(width * batch_size, taps * kernel * channels)
        layers_to_horizontal = self.to_horizontal.unbind(0)
        self.flat_to_horizontal = [layer.view(width * batch_size, 2 * channels) for layer in layers_to_horizontal]
        self.to_horizontal_at = [layer.unbind(0) for layer in layers_to_horizontal]
        # Layer l's horizontal inputs at columns c - half_kernel ... c, as (grid, taps * channels) matrices.
        flat_inputs = self.horizontal_inputs.view(num_layers, batch_size, (half + width) * channels)
        self.windows = [inputs.unfold(1, taps * channels, channels).unbind(1) for inputs in flat_inputs.unbind(0)]
        self.inputs_at = [inputs[:, half:].unbind(1) for inputs in self.horizontal_inputs.unbind(0)]
        self.gated_at = self.gated[:, :, :channels].unbind(1)
        self.gated_with_one = self.gated.unbind(1)
        self.flat_gated = self.gated.view(batch_size, num_layers * (channels + 1))
        self.horizontal_content = self.horizontal_pre_activation[:, :channels]
        # What each layer's step reads and writes at each column, gathered so that a step only unpacks.
        self.step_arguments = [
            [
                (
                    self.to_horizontal_at[index][column], self.windows[index][column], self.horizontal_weights[index],
                    self.gated_at[index],
                    (
                        self.inputs_at[index][column], self.gated_with_one[index], self.residual_weights[index],
                        self.inputs_at[index + 1][column],
                    ) if index < num_layers - 1 else None,
                )
                for index in range(num_layers)
            ]
            for column in range(width)
        ]
        self.vertical_content = self.vertical_pre_activation[:, :channels]

    def vertical_row(self, row: int, codes: torch.Tensor, policy: ThreadPolicy) -> None:
        """Every layer's vertical stack at `row`, leaving each layer's contribution to the horizontal stack (with the
        horizontal biases) in `to_horizontal`; `policy` says on how many threads."""
        newest = row % self.taps
        if row:  # the first layer's vertical input at row r is the embedding of row r - 1; zeros at row 0
            torch.index_select(self.embedding, 0, codes[:, row - 1].t().reshape(-1), out=self.ring_rows[0][newest])
        for index in range(self.num_layers):
            unit = row * self.num_layers + index
            threads = policy.threads_for(unit)
            torch.set_num_threads(threads)
            start = time.perf_counter()
            self.vertical_layer(index, row, newest)
            policy.record(unit, threads, time.perf_counter() - start)

    def vertical_layer(self, index: int, row: int, newest: int) -> None:
        """Layer `index`'s vertical stack at `row`, whose input is in ring slot `newest`."""
        taps = self.taps
        for kernel_row, columns in enumerate(self.columns_at):  # kernel row i reads row r - half_kernel + i
            columns.copy_(self.ring_columns[index][(newest + 1 + kernel_row) % taps])
        pre_activation = self.vertical_pre_activation
        torch.addmm(
            self.vertical_biases[index], self.flat_columns, self.vertical_weights[index], out=pre_activation
        )
        horizontal_bias = self.horizontal_biases[index]
        horizontal_bias = horizontal_bias[row if horizontal_bias.shape[0] > 1 else 0].view_as(pre_activation)
        torch.addmm(
            horizontal_bias, pre_activation, self.vertical_to_horizontal[index], out=self.flat_to_horizontal[index]
        )
        if index == self.num_layers - 1:
            return  # the last layer's vertical output feeds nothing
        if self.vertical_gate_biases is not None:
            gate_bias = self.vertical_gate_biases[index]
            pre_activation.add_(gate_bias[row if gate_bias.shape[0] > 1 else 0].view_as(pre_activation))
        self.vertical_content.tanh_()
        glu(pre_activation, 1, out=self.ring_rows[index + 1][newest])

    def horizontal_step(self, column: int) -> torch.Tensor:
        """The horizontal stack and the output layers at `column` of the current row: the (batch, K) logits."""
        pre_activation, content = self.horizontal_pre_activation, self.horizontal_content
        for to_horizontal, window, weight, gated, residual_arguments in self.step_arguments[column]:
            torch.addmm(to_horizontal, window, weight, out=pre_activation)
            content.tanh_()
            glu(pre_activation, 1, out=gated)
            if residual_arguments is not None:  # the residual: the next layer's horizontal input at this column
                inputs, gated_with_one, residual_weight, next_inputs = residual_arguments
                torch.addmm(inputs, gated_with_one, residual_weight, out=next_inputs)
        torch.mm(self.flat_gated, self.skip_weight, out=self.skips)
        self.skips.relu_()
        torch.addmm(self.output_hidden[1], self.skips, self.output_hidden[0], out=self.hidden)
        self.hidden.relu_()
        return torch.addmm(self.output_logits[1], self.hidden, self.output_logits[0], out=self.logits)

    def sample(
        self,
        temperature: float,
        generator: torch.Generator | None,
        progress_callback: Callable[[int, int], None] | None,
    ) -> torch.LongTensor:
        if self.fused is not None:
            return self.sample_fused(temperature, generator, progress_callback)
        codes = self.codes
        first_inputs = self.inputs_at[0]
        threads = torch.get_num_threads()
        policy = ThreadPolicy(threads if self.embedding.device.type == "cpu" else 1)
        try:
            for row in range(self.height):
                self.vertical_row(row, codes, policy)
                row_codes = codes[:, row].unbind(1)
                torch.set_num_threads(1 if self.step_macs < SINGLE_THREAD_STEP_MACS else policy.chosen)
                for column in range(self.width):
                    drawn = self.pixelcnn.draw(self.horizontal_step(column), temperature, generator)
                    row_codes[column].copy_(drawn)
                    if column + 1 < self.width:  # the first layer's horizontal input at column c + 1
                        torch.index_select(self.embedding, 0, drawn, out=first_inputs[column + 1])
                if progress_callback is not None:
                    progress_callback(row + 1, self.height)
        finally:
            torch.set_num_threads(threads)
        return codes

    def sample_fused(
        self,
        temperature: float,
        generator: torch.Generator | None,
        progress_callback: Callable[[int, int], None] | None,
    ) -> torch.LongTensor:
        """`sample` with the compiled row and step: per position, the uniform numbers of the draw (from the generator,
        in the order `draw` takes them) and one call. A row runs on the thread count `ThreadPolicy` chooses on the first
        rows, out of torch's count; a position too where it has a million multiply-adds or more (split by grid)."""
        description = self.fused.description
        description.output.temperature = temperature
        row_function, step, uniform = self.fused.function_named("pixelcnn_row"), self.fused, self.uniform
        policy = ThreadPolicy(torch.get_num_threads())
        big = self.step_macs >= SINGLE_THREAD_FUSED_STEP_MACS
        for row in range(self.height):
            description.threads = threads = policy.threads_for(row)
            start = time.perf_counter()
            row_function(step.reference, row)
            policy.record(row, threads, time.perf_counter() - start)
            description.step_threads = min(threads, self.batch_size) if big else 1
            for position in range(row * self.width, (row + 1) * self.width):
                uniform_numbers(self.batch_size, generator, uniform.device, out=uniform)
                step(position)
            if progress_callback is not None:
                progress_callback(row + 1, self.height)
        return self.codes
