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

    /// <summary>Connects, from <paramref name="localAddress"/> (a loopback address) when given.</summary>
    public Task<TransportConnection> ConnectAsync(IPAddress? localAddress, CancellationToken cancellationToken) =>
        IsWebSocket
            ? WebSocketClientTransport.ConnectAsync(Address, 1 << 20, localAddress, certificateValidation: null, cancellationToken)
            : TcpTransport.ConnectAsync(Address.Host, Address.Port, localAddress, cancellationToken);

    /// <summary>
    /// Where connection <paramref name="index"/> of <paramref name="total"/> connects from. Loopback has about 28,000
    /// ephemeral ports per source address (32768–60999), so beyond 25,000 connections to one target they are spread
    /// round robin over 127.0.0.2, 127.0.0.3, …, at most 20,000 on each; below that the kernel picks (null).
    /// </summary>
    public IPAddress? SourceAddressFor(int index, int total)
    {
        var count = SourceAddressCount(total);
        return count == 0 ? null : new IPAddress([127, 0, 0, (byte)(2 + index % count)]);
    }

    public int SourceAddressCount(int total)
    {
        if (total <= 25_000)
        {
            return 0;
        }
        if (Address.HostNameType != UriHostNameType.IPv4)
        {
            throw new ArgumentException($"more than 25,000 connections need several source addresses, which only IPv4 loopback (127.0.0.0/8) has; {Address.Host} is not");
        }
        return (total + 19_999) / 20_000;
    }

    public override string ToString() => Address.ToString();
}
