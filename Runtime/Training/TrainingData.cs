using ModelGen.Data;

namespace ModelGen.Training;

/// <summary>Where the data loader stands: the epoch and the next window of that epoch's order.</summary>
public sealed record DataPosition(int Epoch, int Next);

/// <summary>
/// Packed windows of a tokenized corpus, served in a seeded order that is reshuffled every epoch. The order of epoch e
/// depends only on (seed, e), so a saved <see cref="DataPosition"/> restores the loader exactly.
/// </summary>
public sealed class TrainingData
{
    private readonly IReadOnlyList<PackedWindow> _windows;
    private readonly int _seed;
    private int[] _order;

    /// <summary>Serves <paramref name="windows"/> from <paramref name="position"/> on.</summary>
    public TrainingData(IReadOnlyList<PackedWindow> windows, int seed, DataPosition? position = null)
    {
        if (windows.Count == 0) throw new InvalidDataException("the corpus produced no complete window: it is empty or shorter than one window");
        (_windows, _seed) = (windows, seed);
        Position = position ?? new DataPosition(0, 0);
        _order = Order(Position.Epoch);
    }

    /// <summary>Windows per epoch.</summary>
    public int Count => _windows.Count;

    /// <summary>The next window to serve.</summary>
    public DataPosition Position { get; private set; }

    /// <summary>Tokenizes and packs <paramref name="documents"/> into windows of <paramref name="length"/>.</summary>
    public static IReadOnlyList<PackedWindow> Pack(IEnumerable<TextDocument> documents, TextTokenizer tokenizer, ModelConfig model, int length, bool maskBoundaryLoss)
    {
        var packer = new DocumentPacker(length, model.AnchorTokenId, model.EosTokenId, maskBoundaryLoss);
        return packer.Pack(documents.Select(d => tokenizer.Encode(d.Text))).ToList();
    }

    /// <summary>The next <paramref name="count"/> windows, wrapping into a freshly shuffled epoch.</summary>
    public IReadOnlyList<PackedWindow> Next(int count)
    {
        var batch = new List<PackedWindow>(count);
        while (batch.Count < count)
        {
            if (Position.Next >= _order.Length)
            {
                Position = new DataPosition(Position.Epoch + 1, 0);
                _order = Order(Position.Epoch);
            }
            batch.Add(_windows[_order[Position.Next]]);
            Position = Position with { Next = Position.Next + 1 };
        }
        return batch;
    }

    private int[] Order(int epoch)
    {
        var order = Enumerable.Range(0, _windows.Count).ToArray();
        // Seeded System.Random is deterministic across processes (HashCode would not be).
        new Random(unchecked(_seed * 1_000_003 + epoch)).Shuffle(order);
        return order;
    }
}
