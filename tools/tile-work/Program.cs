// What the warpgroup-MMA flash kernels compute on the benchmark's windows (bench-attention's layouts, same seeds),
// from the tile maps alone: the pairs they process per allowed pair, and how well a GPU of 132 SMs (one group each)
// spreads their groups in grid order. Forward: 128-query blocks, steps of two 64-key tiles of the list; backward:
// 128-key blocks, 64-query steps. "apart": the intra-document lists the kernels use when the anchor key is computed apart.
using ModelGen;
using ModelGen.Benchmarking;
using ModelGen.Masks;

const int Sms = 132, Heads = 32;
double overhead = args.Length > 0 ? double.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 2;
Console.WriteLine($"per-group start cost in the schedule: {overhead} steps");
Console.WriteLine("| window | processed / allowed pairs, forward (apart) | backward (apart) | steps per group, forward / backward | makespan / ideal, forward / backward |");
Console.WriteLine("|---|---|---|---|---|");
foreach (int seq in new[] { 8192, 16384, 32768, 65536 })
foreach (int doc in new[] { 0, 1024, 4096 })
{
    var layout = doc == 0 ? DocumentLayout.Single(seq) : KernelBench.Layout(seq, doc);
    var mask = new AttentionMask(doc == 0 ? MaskKind.Causal : MaskKind.Anchor);
    long allowed = mask.AllowedPairs(layout);
    var map = TileMap.Build(layout, mask, 64, 64);
    var free = doc == 0 ? map : TileMap.Build(layout, new AttentionMask(MaskKind.IntraDocument), 64, 64);
    var (fwd, fwdFree) = (ForwardSteps(map), ForwardSteps(free));
    var (bwd, bwdFree) = (BackwardSteps(map), BackwardSteps(free));
    double Ratio(List<int> steps, int pairsPerStep) => steps.Sum(x => (long)x) * (double)pairsPerStep / allowed;
    // Grid order: heads fastest; forward query blocks from the last, backward key blocks from the first.
    var fOrder = Enumerable.Range(0, fwdFree.Count).Reverse().SelectMany(b => Enumerable.Repeat(fwdFree[b], Heads)).ToList();
    var bOrder = Enumerable.Range(0, bwdFree.Count).SelectMany(b => Enumerable.Repeat(bwdFree[b], Heads)).ToList();
    string name = doc == 0 ? $"causal {seq / 1024}K" : $"anchor doc {doc} {seq / 1024}K ({layout.Documents.Count} docs)";
    Console.WriteLine($"| {name} | {Ratio(fwd, 128 * 128):F3} ({Ratio(fwdFree, 128 * 128):F3}) | {Ratio(bwd, 128 * 64):F3} ({Ratio(bwdFree, 128 * 64):F3}) " +
        $"| {fwdFree.Average():F1} / {bwdFree.Average():F1} | {Makespan(fOrder):F3} / {Makespan(bOrder):F3} |");
}

static List<int> ForwardSteps(TileMap map)
{
    var steps = new List<int>();
    for (int qb = 0; qb < map.QueryTiles; qb += 2)
    {
        int tiles = 0;
        for (int kt = 0; kt < map.KeyTiles; kt++)
            if (map[qb, kt] != TileKind.Empty || (qb + 1 < map.QueryTiles && map[qb + 1, kt] != TileKind.Empty)) tiles++;
        steps.Add((tiles + 1) / 2);
    }
    return steps;
}

static List<int> BackwardSteps(TileMap map)
{
    var steps = new List<int>();
    for (int kb = 0; kb < map.KeyTiles; kb += 2)
    {
        int tiles = 0;
        for (int qt = 0; qt < map.QueryTiles; qt++)
            if (map[qt, kb] != TileKind.Empty || (kb + 1 < map.KeyTiles && map[qt, kb + 1] != TileKind.Empty)) tiles++;
        steps.Add(tiles);
    }
    return steps;
}

// Groups dispatched in order to the first free SM; each costs its steps plus the start cost.
double Makespan(List<int> groups)
{
    var free = new PriorityQueue<int, double>();
    for (int i = 0; i < Sms; i++) free.Enqueue(i, 0);
    double total = 0, end = 0;
    foreach (var g in groups)
    {
        free.TryDequeue(out int sm, out double at);
        double done = at + g + overhead;
        total += g + overhead;
        end = Math.Max(end, done);
        free.Enqueue(sm, done);
    }
    return end / (total / Sms);
}
