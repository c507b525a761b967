namespace StateMesh.Protocol;

/// <summary>Limits the native codec applies to data from the network. Immutable; use the presets.</summary>
public sealed record NativeCodecLimits
{
    /// <summary>Limits for data from untrusted peers: the default on every node.</summary>
    public static NativeCodecLimits UntrustedData { get; } = new();

    /// <summary>Most messages one frame may carry.</summary>
    public int MaxMessagesPerFrame { get; init; } = 4096;

    /// <summary>Most names one bulk message may carry.</summary>
    public int MaxNames { get; init; } = 10_000;

    /// <summary>Most entries of a versions map.</summary>
    public int MaxVersions { get; init; } = 10_000;

    /// <summary>Longest string, in bytes.</summary>
    public int MaxStringBytes { get; init; } = 64 * 1024;
}
