"""Building blocks shared by the models: the gated PixelCNN (`gated_pixelcnn`, its cached sampler in
`gated_pixelcnn_sampler`), the WaveNet decoder with cached generation (`wavenet`), and what both samplers share: the
draw of a code or sample from logits (`sampling`), the gated activation (`gates`), the choice of their thread count
(`sampler_threads`) and their compiled steps (`fused_steps`). Neither sampler imports the other."""

from .gated_pixelcnn import GatedPixelCNN, GatedPixelCNNLayer
from .sampling import draw_from_logits
from .wavenet import WaveNet, WaveNetBlock


__all__ = ["GatedPixelCNN", "GatedPixelCNNLayer", "WaveNet", "WaveNetBlock", "draw_from_logits"]
