"""Images, sample by sample: what every decode path shares.

- :mod:`.pipeline`: :class:`ImagePipeline`, the transform (RandomResizedCrop + flip, or resize + centre crop, then
  normalise) and the choice of implementation (native kernel, Python, DALI);
- :mod:`.transforms`: the geometry of torchvision's transforms restated without it, the per-sample generator of
  ``(seed, epoch, index)``, the normalisation constants and the missing-label rule;
- :mod:`.decode`: the Python decode path (simplejpeg with DCT scaling, PIL for the rest) and header reading;
- :mod:`.jpeg_check`: the verdict every path gives before decoding a pixel (cut files, pixel limit);
- :mod:`.reference`: the torchvision-equivalent reference the parity tests compare against.
"""
