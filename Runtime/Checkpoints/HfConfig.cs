namespace ModelGen.Checkpoints;

/// <summary>Binds HF <c>config.json</c> files (transformers ≥ 5 <c>rope_parameters</c> and older <c>rope_theta</c>/<c>rope_scaling</c>).</summary>
public static class HfConfig
{
    /// <summary>
    /// Reads <paramref name="configJsonPath"/>; fields it lacks keep the values of <paramref name="declared"/>.
    /// With <paramref name="requireDeclaredSizes"/>, every size in the file must equal the declared one.
    /// Throws <see cref="ModelConfigException"/> naming the file and field on bad input.
    /// </summary>
    public static ModelConfig Load(string configJsonPath, ModelConfig declared, bool requireDeclaredSizes) =>
        throw new NotImplementedException("HfConfig.Load: being written on the ckpt branch");
}
