"""Dataset sources, one per module: `demo` (the procedural world, rendered in memory), `folder` (your
own image folders), the papers' benchmarks (`flowers102`, `dtd`, `eurosat`, `fgvc_aircraft`,
`resisc45`, `cub`: their on-disk layouts read directly, shared parts in `benchmark`) and the other
`torchvision` datasets; `paradigms` turns a source's images into the manifest the stages read, and
`images` opens any manifest row as an 8-bit RGB image.
"""
