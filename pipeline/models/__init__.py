"""Teacher and student models, independent of the data plane.

Modules (import from them directly; this package stays import-light so the artifact loader can
use `pipeline.models.inputs` without pulling in model code):

- `config`: `FeatureSchema`, `TokenGroup`, `TeacherConfig` (presets tiny/small/large), `StudentConfig`
- `inputs`: `InputSpec`, `check_inputs`, `InputError` — the input contracts
- `tokenizer`: `Tokenizer` — feature slots to T tokens of width D
- `rankmixer`: `RankMixerBlock`, `RankMixer`, `PerTokenFFN`, `SparseMoEPerTokenFFN`, `token_mixing`
- `sequence`: short-sequence pooling, target attention, the LONGER-style `LongSequenceEncoder`
- `teacher`: `Teacher`; `student`: `UGSepStudent`; `quantize`: `quantize_w8a16`
- `synthetic`: random inputs and a planted click model
"""
