using StateMesh.Deepstream;

namespace StateMesh.Client;

/// <summary>Lets a StateMesh client speak deepstream's protocol.</summary>
public static class DeepstreamClientOptionsExtensions
{
    /// <summary>Uses the deepstream v5+ protocol: for ws://host:6020/deepstream on a StateMesh node or a deepstream server.</summary>
    public static StateMeshClientOptions UseDeepstreamProtocol(this StateMeshClientOptions options)
    {
        options.Codec = DeepstreamCodec.Instance;
        return options;
    }
}
