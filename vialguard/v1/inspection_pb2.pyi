from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PixelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_FORMAT_UNSPECIFIED: _ClassVar[PixelFormat]
    MONO8: _ClassVar[PixelFormat]
    MONO16: _ClassVar[PixelFormat]

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    RAW: _ClassVar[Encoding]
    PNG: _ClassVar[Encoding]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    ACCEPT: _ClassVar[Decision]
    REJECT: _ClassVar[Decision]

class ProductDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRODUCT_DECISION_UNSPECIFIED: _ClassVar[ProductDecision]
    PRODUCT_ACCEPT: _ClassVar[ProductDecision]
    PRODUCT_REJECT: _ClassVar[ProductDecision]
    PRODUCT_PENDING: _ClassVar[ProductDecision]
PIXEL_FORMAT_UNSPECIFIED: PixelFormat
MONO8: PixelFormat
MONO16: PixelFormat
ENCODING_UNSPECIFIED: Encoding
RAW: Encoding
PNG: Encoding
DECISION_UNSPECIFIED: Decision
ACCEPT: Decision
REJECT: Decision
PRODUCT_DECISION_UNSPECIFIED: ProductDecision
PRODUCT_ACCEPT: ProductDecision
PRODUCT_REJECT: ProductDecision
PRODUCT_PENDING: ProductDecision

class Frame(_message.Message):
    __slots__ = ("index", "width", "height", "pixel_format", "encoding", "data", "camera_timestamp_ns")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FORMAT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CAMERA_TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    index: int
    width: int
    height: int
    pixel_format: PixelFormat
    encoding: Encoding
    data: bytes
    camera_timestamp_ns: int
    def __init__(self, index: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., pixel_format: _Optional[_Union[PixelFormat, str]] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., data: _Optional[bytes] = ..., camera_timestamp_ns: _Optional[int] = ...) -> None: ...

class Acquisition(_message.Message):
    __slots__ = ("acquisition_id", "product_id", "run_index", "recipe_id", "frames", "acquired_at_unix_ms")
    ACQUISITION_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_INDEX_FIELD_NUMBER: _ClassVar[int]
    RECIPE_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    ACQUIRED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    acquisition_id: str
    product_id: str
    run_index: int
    recipe_id: str
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    acquired_at_unix_ms: int
    def __init__(self, acquisition_id: _Optional[str] = ..., product_id: _Optional[str] = ..., run_index: _Optional[int] = ..., recipe_id: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ..., acquired_at_unix_ms: _Optional[int] = ...) -> None: ...

class PatchResult(_message.Message):
    __slots__ = ("frame", "vial", "region", "region_id", "score", "threshold", "over")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    VIAL_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OVER_FIELD_NUMBER: _ClassVar[int]
    frame: int
    vial: int
    region: int
    region_id: str
    score: float
    threshold: float
    over: bool
    def __init__(self, frame: _Optional[int] = ..., vial: _Optional[int] = ..., region: _Optional[int] = ..., region_id: _Optional[str] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., over: _Optional[bool] = ...) -> None: ...

class RunPolicyState(_message.Message):
    __slots__ = ("k", "n", "runs_seen", "accepts", "rejects", "product_decision")
    K_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    RUNS_SEEN_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_FIELD_NUMBER: _ClassVar[int]
    REJECTS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_DECISION_FIELD_NUMBER: _ClassVar[int]
    k: int
    n: int
    runs_seen: int
    accepts: int
    rejects: int
    product_decision: ProductDecision
    def __init__(self, k: _Optional[int] = ..., n: _Optional[int] = ..., runs_seen: _Optional[int] = ..., accepts: _Optional[int] = ..., rejects: _Optional[int] = ..., product_decision: _Optional[_Union[ProductDecision, str]] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("decode_ms", "patching_ms", "inference_ms", "queue_ms", "aggregation_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    PATCHING_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    patching_ms: float
    inference_ms: float
    queue_ms: float
    aggregation_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., patching_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., aggregation_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("acquisition_id", "product_id", "run_index", "decision", "strip_score", "worst_margin", "patches", "model_name", "model_version", "run_policy", "timings", "threshold_set", "replayed", "stream_id", "decided_at_unix_ms")
    ACQUISITION_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_INDEX_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    STRIP_SCORE_FIELD_NUMBER: _ClassVar[int]
    WORST_MARGIN_FIELD_NUMBER: _ClassVar[int]
    PATCHES_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_POLICY_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SET_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    acquisition_id: str
    product_id: str
    run_index: int
    decision: Decision
    strip_score: float
    worst_margin: float
    patches: _containers.RepeatedCompositeFieldContainer[PatchResult]
    model_name: str
    model_version: int
    run_policy: RunPolicyState
    timings: StageTimings
    threshold_set: str
    replayed: bool
    stream_id: str
    decided_at_unix_ms: int
    def __init__(self, acquisition_id: _Optional[str] = ..., product_id: _Optional[str] = ..., run_index: _Optional[int] = ..., decision: _Optional[_Union[Decision, str]] = ..., strip_score: _Optional[float] = ..., worst_margin: _Optional[float] = ..., patches: _Optional[_Iterable[_Union[PatchResult, _Mapping]]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., run_policy: _Optional[_Union[RunPolicyState, _Mapping]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., threshold_set: _Optional[str] = ..., replayed: _Optional[bool] = ..., stream_id: _Optional[str] = ..., decided_at_unix_ms: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("after_id", "product_id")
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    after_id: str
    product_id: str
    def __init__(self, after_id: _Optional[str] = ..., product_id: _Optional[str] = ...) -> None: ...

class HeatmapRequest(_message.Message):
    __slots__ = ("acquisition_id",)
    ACQUISITION_ID_FIELD_NUMBER: _ClassVar[int]
    acquisition_id: str
    def __init__(self, acquisition_id: _Optional[str] = ...) -> None: ...

class PatchHeatmap(_message.Message):
    __slots__ = ("frame", "vial", "region", "region_id", "png", "patch_png")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    VIAL_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    PATCH_PNG_FIELD_NUMBER: _ClassVar[int]
    frame: int
    vial: int
    region: int
    region_id: str
    png: bytes
    patch_png: bytes
    def __init__(self, frame: _Optional[int] = ..., vial: _Optional[int] = ..., region: _Optional[int] = ..., region_id: _Optional[str] = ..., png: _Optional[bytes] = ..., patch_png: _Optional[bytes] = ...) -> None: ...

class HeatmapReply(_message.Message):
    __slots__ = ("acquisition_id", "heatmaps")
    ACQUISITION_ID_FIELD_NUMBER: _ClassVar[int]
    HEATMAPS_FIELD_NUMBER: _ClassVar[int]
    acquisition_id: str
    heatmaps: _containers.RepeatedCompositeFieldContainer[PatchHeatmap]
    def __init__(self, acquisition_id: _Optional[str] = ..., heatmaps: _Optional[_Iterable[_Union[PatchHeatmap, _Mapping]]] = ...) -> None: ...
