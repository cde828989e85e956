using Microsoft.CodeAnalysis;

namespace ModelGen.Generators.Diagnostics;

/// <summary>
/// Every diagnostic the generator reports. IDs are stable and listed in <c>AnalyzerReleases.Unshipped.md</c>.
/// </summary>
internal static class DiagnosticDescriptors
{
    private const string Category = "ModelGen";

    private static DiagnosticDescriptor Error(string id, string title, string message) =>
        new(id, title, message, Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    /// <summary>MG0001: the generated part could not join a non-partial class.</summary>
    public static readonly DiagnosticDescriptor NotPartial = Error(
        "MG0001", "Model declaration must be partial",
        "Model declaration '{0}' must be declared 'partial' so the generator can add its members");

    /// <summary>MG0002: nested, generic or file-local classes cannot be named by the catalog.</summary>
    public static readonly DiagnosticDescriptor UnsupportedShape = Error(
        "MG0002", "Model declaration must be a top-level non-generic class",
        "Model declaration '{0}' must be a top-level, non-generic, non-file-local class ({1})");

    /// <summary>MG0003: only families whose weight names and config binding are known.</summary>
    public static readonly DiagnosticDescriptor UnknownFamily = Error(
        "MG0003", "Unknown model family",
        "Unknown family '{0}'; known families are {1}");

    /// <summary>MG0004: a [Decoder] size is zero or negative.</summary>
    public static readonly DiagnosticDescriptor NonPositiveSize = Error(
        "MG0004", "Decoder size must be positive",
        "[Decoder] {0} must be {1}, got {2}");

    /// <summary>MG0005: GQA needs whole groups of query heads per key/value head.</summary>
    public static readonly DiagnosticDescriptor HeadsNotDivisibleByKvHeads = Error(
        "MG0005", "Heads must be a multiple of KvHeads",
        "[Decoder] Heads = {0} is not divisible by KvHeads = {1}");

    /// <summary>MG0006: the head dimension cannot be derived.</summary>
    public static readonly DiagnosticDescriptor HiddenNotDivisibleByHeads = Error(
        "MG0006", "Hidden must be a multiple of Heads when HeadDim is not given",
        "[Decoder] Hidden = {0} is not divisible by Heads = {1}; give HeadDim explicitly");

    /// <summary>MG0007: an enum argument outside the values the generator knows.</summary>
    public static readonly DiagnosticDescriptor UnknownEnumValue = Error(
        "MG0007", "Unknown enum value",
        "unknown {0} {1}; known values are {2}");

    /// <summary>MG0008: a RoPE scaling lacks a parameter it needs.</summary>
    public static readonly DiagnosticDescriptor MissingRopeParameter = Error(
        "MG0008", "RoPE scaling parameter missing or invalid",
        "RoPE scaling {0} requires {1}");

    /// <summary>MG0009: θ must be positive.</summary>
    public static readonly DiagnosticDescriptor NonPositiveTheta = Error(
        "MG0009", "RoPE Theta must be positive",
        "[Rope] Theta must be positive, got {0}");

    /// <summary>MG0010: the rotating fraction of each head must be in (0, 1].</summary>
    public static readonly DiagnosticDescriptor PartialRotaryFactorOutOfRange = Error(
        "MG0010", "PartialRotaryFactor must be in (0, 1]",
        "[Rope] PartialRotaryFactor must be in (0, 1], got {0}");

    /// <summary>MG0011: RoPE rotates pairs of dimensions.</summary>
    public static readonly DiagnosticDescriptor OddRotaryDim = Error(
        "MG0011", "Rotary dimension must be even",
        "[Rope] PartialRotaryFactor = {0} gives rotary dimension {1} for HeadDim = {2}, which must be even and at least 2");

    /// <summary>MG0012: an explicit sliding window must be positive (omit it for none).</summary>
    public static readonly DiagnosticDescriptor NonPositiveSlidingWindow = Error(
        "MG0012", "SlidingWindow must be positive",
        "[Attention] SlidingWindow must be positive when given, got {0}; omit it for no window");

    /// <summary>MG0013: ε must be a positive finite number.</summary>
    public static readonly DiagnosticDescriptor NonPositiveEps = Error(
        "MG0013", "RmsNorm Eps must be positive",
        "[RmsNorm] Eps must be a positive number, got {0}");

    /// <summary>MG0014: a RoPE parameter that the chosen scaling never reads.</summary>
    public static readonly DiagnosticDescriptor IgnoredRopeParameter = new(
        "MG0014", "RoPE parameter ignored by the scaling",
        "[Rope] {0} is ignored by RoPE scaling {1}",
        Category, DiagnosticSeverity.Warning, isEnabledByDefault: true);

    /// <summary>MG0015: the catalog maps each model_type to one family declaration.</summary>
    public static readonly DiagnosticDescriptor DuplicateFamily = Error(
        "MG0015", "Family declared twice",
        "Family '{0}' is already declared by '{1}'; a compilation may have one family declaration (without [Decoder]) per model_type");

    /// <summary>MG0016: the generated mask part must join a top-level non-generic partial struct.</summary>
    public static readonly DiagnosticDescriptor MaskNotPartialStruct = Error(
        "MG0016", "Mask declaration must be a top-level partial struct",
        "Mask declaration '{0}' must be a top-level, non-generic 'partial struct' ({1})");

    /// <summary>MG0017: the mask expression does not parse.</summary>
    public static readonly DiagnosticDescriptor InvalidMaskExpression = Error(
        "MG0017", "Invalid mask expression",
        "Mask expression '{0}' is invalid at position {1}: {2}");

    /// <summary>MG0018: a part the generator does not know.</summary>
    public static readonly DiagnosticDescriptor UnknownMaskPart = Error(
        "MG0018", "Unknown mask part",
        "Unknown mask part '{0}'; known parts are {1}");

    /// <summary>MG0019: a part's argument is missing, extra or not a positive integer.</summary>
    public static readonly DiagnosticDescriptor BadMaskArgument = Error(
        "MG0019", "Invalid mask part argument",
        "Invalid mask part argument: {0}");

    /// <summary>MG0020: the classifier's inclusion–exclusion is bounded to a few alternatives.</summary>
    public static readonly DiagnosticDescriptor TooManyMaskTerms = Error(
        "MG0020", "Too many mask alternatives",
        "Mask expression '{0}' expands to {1} alternatives (ORs of ANDs); at most {2} are supported");

    /// <summary>MG0021: the predicate's shape is wrong.</summary>
    public static readonly DiagnosticDescriptor InvalidPredicate = Error(
        "MG0021", "Invalid mask predicate",
        "[MaskPredicate] method '{0}' is invalid: {1}");

    /// <summary>MG0022: kernels cannot allocate managed objects.</summary>
    public static readonly DiagnosticDescriptor PredicateAllocates = Error(
        "MG0022", "Mask predicate allocates",
        "Mask predicate '{0}' cannot run in a kernel: {1} allocates on the managed heap");

    /// <summary>MG0023: kernels cannot dispatch through references.</summary>
    public static readonly DiagnosticDescriptor PredicateCallsThroughReference = Error(
        "MG0023", "Mask predicate calls through a reference",
        "Mask predicate '{0}' cannot run in a kernel: the call to '{1}' is a virtual, interface or instance call on a reference type");

    /// <summary>MG0024: kernels see only the predicate's arguments and constants.</summary>
    public static readonly DiagnosticDescriptor PredicateUsesState = Error(
        "MG0024", "Mask uses instance or mutable state",
        "Mask '{0}' cannot run in a kernel: it uses {1}; a mask may use only its arguments, constants and readonly static values");

    /// <summary>MG0025: kernels have no call stack to recurse on.</summary>
    public static readonly DiagnosticDescriptor PredicateRecursive = Error(
        "MG0025", "Mask predicate is recursive",
        "Mask predicate '{0}' cannot run in a kernel: it calls itself{1}");

    /// <summary>MG0026: kernels have no exceptions.</summary>
    public static readonly DiagnosticDescriptor PredicateThrows = Error(
        "MG0026", "Mask predicate uses exceptions",
        "Mask predicate '{0}' cannot run in a kernel: {1}, and kernels have no exceptions");

    /// <summary>MG0027: a predicate cannot be classified analytically; the fallback evaluates it per element.</summary>
    public static readonly DiagnosticDescriptor PredicateClassifiedByElements = new(
        "MG0027", "Mask tiles classified by evaluating the predicate",
        "Mask '{0}': predicate '{1}' cannot be analyzed, so tiles its expression does not rule out are classified by evaluating it on every pair (once per tile map)",
        Category, DiagnosticSeverity.Info, isEnabledByDefault: true);

    /// <summary>MG0028: mask names are unique (the CLI and the registry look them up by name).</summary>
    public static readonly DiagnosticDescriptor DuplicateMaskName = Error(
        "MG0028", "Mask name declared twice",
        "Mask name '{0}' is already declared by '{1}'");

    /// <summary>MG0029: the generated kernels are added to the class as another part.</summary>
    public static readonly DiagnosticDescriptor FlashKernelsNotPartial = Error(
        "MG0029", "Flash-attention kernel host is not partial",
        "Class '{0}' must be partial: the flash-attention kernels are generated into it");

    /// <summary>MG0030: the emitter's tiling covers head dimensions 64 and 128.</summary>
    public static readonly DiagnosticDescriptor UnsupportedFlashHeadDim = Error(
        "MG0030", "Unsupported flash-attention head dimension",
        "Flash-attention kernels exist for head dimensions 64 and 128, not {0}; other head dimensions use the portable attention kernel");
}
