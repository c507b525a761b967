using System.Net;
using StateMesh.Deepstream;
using StateMesh.Protocol;
using StateMesh.Transport;

namespace StateMesh.LoadTest;

/// <summary>How the tool talks to the node under test.</summary>
internal enum Wire
{
    /// <summary>StateMesh's MessagePack protocol over TCP (<c>tcp://</c>) or a WebSocket (<c>ws://…/statemesh</c>).</summary>
    Native,

    /// <summary>The deepstream v5+ protobuf protocol over a WebSocket (<c>ws://…/deepstream</c>): StateMesh or @deepstream/server.</summary>
    Deepstream,

    /// <summary>The bare relay of this tool (<c>relay://</c>): length-prefixed frames copied to subscribers, no protocol.</summary>
    Relay,
}

/// <summary>A loopback address and the protocol spoken there.</summary>
internal sealed record Endpoint(Uri Address, Wire Wire)
{
    public IMessageCodec Codec => Wire switch { Wire.Deepstream => DeepstreamCodec.Instance, Wire.Relay => RelayCodec.Instance, _ => NativeCodec.Instance };

    public bool IsWebSocket => Address.Scheme is "ws";

    /// <summary>Parses <c>tcp://</c>, <c>ws://…/deepstream</c>, <c>ws://…/statemesh</c> or <c>relay://</c>; refuses anything but loopback.</summary>
    public static Endpoint Parse(string text)
    {
        var uri = new Uri(text);
        if (!IPAddress.TryParse(uri.Host, out var ip) || !IPAddress.IsLoopback(ip))
        {
            throw new ArgumentException($"refusing {text}: the load tool targets loopback IP addresses only");
        }
        var wire = uri.Scheme switch
        {
            "tcp" => Wire.Native,
            "relay" => Wire.Relay,
            "ws" when uri.AbsolutePath.TrimEnd('/').EndsWith("/statemesh", StringComparison.Ordinal) => Wire.Native,
            "ws" => Wire.Deepstream,
            _ => throw new ArgumentException($"unknown scheme in {text}: use tcp://, ws:// or relay://"),
        };
        return new Endpoint(uri, wire);
    }

    public Task<TransportConnection> ConnectAsync(CancellationToken cancellationToken) =>
        IsWebSocket
            ? WebSocketClientTransport.ConnectAsync(Address, 1 << 20, cancellationToken)
            : TcpTransport.ConnectAsync(Address.Host, Address.Port, cancellationToken);

    public override string ToString() => Address.ToString();
}
