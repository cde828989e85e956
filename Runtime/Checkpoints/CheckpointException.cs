namespace ModelGen.Checkpoints;

/// <summary>A checkpoint file is unreadable, corrupt or does not fit the model. The message names file and tensor.</summary>
public sealed class CheckpointException(string file, string? tensor, string problem)
    : Exception(tensor is null ? $"{file}: {problem}" : $"{file}: tensor '{tensor}' {problem}")
{
    /// <summary>The file at fault.</summary>
    public string File { get; } = file;
    /// <summary>The tensor (or field) at fault, if any.</summary>
    public string? Tensor { get; } = tensor;
}
