"""Architecture descriptions of the released f-BRS models and their f-BRS insertion taps."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

DEEPLAB_BACKBONES = ('resnet34', 'resnet50', 'resnet101')


@dataclasses.dataclass(frozen=True)
class Arch:
    """Everything needed to rebuild a model; serialised next to converted weights."""
    family: str                     # 'deeplab' or 'hrnet'
    backbone: str = 'resnet34'      # deeplab only
    deeplab_ch: int = 128           # deeplab only
    aspp_dropout: float = 0.2       # deeplab only (training)
    width: int = 18                 # hrnet only
    ocr_width: int = 64             # hrnet only
    small: bool = False             # hrnet only
    norm_radius: float = 260.0

    def __post_init__(self):
        if self.family == 'deeplab':
            if self.backbone not in DEEPLAB_BACKBONES:
                raise ValueError(f'unknown DeepLab backbone {self.backbone!r}')
        elif self.family != 'hrnet':
            raise ValueError(f'unknown model family {self.family!r}')

    @property
    def name(self) -> str:
        """Reference-style name, e.g. ``resnet34_dh128`` or ``hrnet18_ocr64`` (``hrnet18s_ocr64`` small)."""
        if self.family == 'deeplab':
            return f'{self.backbone}_dh{self.deeplab_ch}'
        return f'hrnet{self.width}{"s" if self.small else ""}_ocr{self.ocr_width}'

    @property
    def fbrs_taps(self) -> dict[str, str]:
        """Tap optimised by each f-BRS mode (SPEC §2.1, §3.5; HRNet B is the same as A)."""
        if self.family == 'deeplab':
            return {'f-BRS-A': 'c4', 'f-BRS-B': 'after_aspp', 'f-BRS-C': 'after_deeplab'}
        return {'f-BRS-A': 'hrnet_feats', 'f-BRS-B': 'hrnet_feats', 'f-BRS-C': 'ocr_out'}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> 'Arch':
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f'unknown architecture fields {sorted(unknown)}')
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


RELEASED = {
    'resnet34_dh128': Arch('deeplab', 'resnet34', 128, 0.2),
    'resnet50_dh128': Arch('deeplab', 'resnet50', 128, 0.2),
    'resnet101_dh256': Arch('deeplab', 'resnet101', 256, 0.5),
    'hrnet18_ocr64': Arch('hrnet', width=18, ocr_width=64),
    'hrnet18s_ocr64': Arch('hrnet', width=18, ocr_width=64, small=True),
    'hrnet32_ocr128': Arch('hrnet', width=32, ocr_width=128),
    'hrnet48_ocr128': Arch('hrnet', width=48, ocr_width=128),
}
