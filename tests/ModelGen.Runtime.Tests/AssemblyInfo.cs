// TorchSharp's random generator is process-global: tests that seed it and then draw (model initialization, random
// inputs) must not interleave with other tests' draws, or bit-exact expectations (resume, reference comparisons) break.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
