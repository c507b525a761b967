namespace StateMesh.Records;

/// <summary>What a write's version means against the record's current version.</summary>
internal enum VersionCheck
{
    /// <summary>current + 1 (or -1, "next"): apply it.</summary>
    Next,
    /// <summary>At or below current: someone else wrote first (VERSION_EXISTS).</summary>
    Exists,
    /// <summary>Beyond current + 1: a gap (INVALID_VERSION).</summary>
    Gap,
}

internal static class RecordVersions
{
    /// <summary>Checks a write's version; on <see cref="VersionCheck.Next"/>, <paramref name="resolved"/> is the version to store.</summary>
    public static VersionCheck Check(int current, int requested, out int resolved)
    {
        resolved = requested == -1 ? current + 1 : requested;
        return resolved <= current ? VersionCheck.Exists : resolved > current + 1 ? VersionCheck.Gap : VersionCheck.Next;
    }
}
