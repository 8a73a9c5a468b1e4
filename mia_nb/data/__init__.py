"""Stage 1, images: the datasets and their installer, the seeded splits, and the non-member pools.

`catalog` (the dataset registry: names and facts, no torch), `datasets` (loaders, data checks, the pool of
images), `install` (Fashion-MNIST from Debian or torchvision), `splits` (disjoint, class-stratified parts),
`transforms` (the paper's image transforms and corruptions), `nonmembers` (the pool registry `POOLS`:
held-out data, transforms, corruptions, other content, GAN fakes, other datasets), `gan` (the in-study GAN:
network, training, PNG files, and the study's GAN job and fakes).
"""
