using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Text;
using StateMesh.Transport;

namespace StateMesh.LoadTest;

/// <summary>
/// The physical limit: a bare relay on the same socket layer as the node (TCP, System.IO.Pipelines). A connection's
/// first frame is <c>S name</c> (receive that channel) or <c>P name</c> (send on it), answered by <c>OK</c>; after that
/// every complete frame a sender writes is copied byte for byte to each receiver of its channel. No parsing, no
/// subscription logic, no queues: what is left is reading and writing sockets.
/// </summary>
internal static class Relay
{
    private sealed class Receiver(TransportConnection connection)
    {
        public readonly TransportConnection Connection = connection;
        public readonly SemaphoreSlim Gate = new(1, 1);
    }

    private static readonly ConcurrentDictionary<string, Receiver[]> Channels = new();

    public static async Task<int> RunAsync(int port, int maxSeconds)
    {
        await using var listener = new TcpListenerLoop(new IPEndPoint(IPAddress.Loopback, port), connection =>
        {
            _ = Task.Run(() => ServeAsync(connection));
            return true;
        });
        listener.Start();
        Console.WriteLine($"relay listening on relay://127.0.0.1:{listener.LocalEndPoint.Port}");
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(maxSeconds));
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        AppDomain.CurrentDomain.ProcessExit += (_, _) => stop.Cancel();
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token);
        }
        catch (OperationCanceledException)
        {
        }
        return 0;
    }

    private static async Task ServeAsync(TransportConnection connection)
    {
        var input = connection.Input;
        Receiver[]? targets = null;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                var rest = buffer;
                if (targets is null)
                {
                    if (Framing.TryReadFrame(ref rest, 1024, out var hello, out _) == Framing.Status.Frame)
                    {
                        Framing.WriteHeader(connection.Output, 2);
                        connection.Output.Write("OK"u8);
                        await connection.Output.FlushAsync();
                        targets = Join(connection, Encoding.UTF8.GetString(hello));
                        input.AdvanceTo(rest.Start); // what follows the hello is relayed on the next read
                        continue;
                    }
                }
                else
                {
                    while (Framing.TryReadFrame(ref rest, int.MaxValue, out _, out _) == Framing.Status.Frame)
                    {
                    }
                    await CopyAsync(buffer.Slice(buffer.Start, rest.Start), targets);
                }
                input.AdvanceTo(rest.Start, buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException)
        {
        }
        await connection.DisposeAsync();
    }

    private static async Task CopyAsync(ReadOnlySequence<byte> frames, Receiver[] targets)
    {
        if (frames.IsEmpty)
        {
            return;
        }
        foreach (var target in targets)
        {
            await target.Gate.WaitAsync();
            try
            {
                foreach (var segment in frames)
                {
                    target.Connection.Output.Write(segment.Span);
                }
                await target.Connection.Output.FlushAsync();
            }
            finally
            {
                target.Gate.Release();
            }
        }
    }

    /// <summary>Receivers join their channel and get nothing to send to; senders get the channel's receivers.</summary>
    private static Receiver[] Join(TransportConnection connection, string hello)
    {
        var name = hello[2..];
        if (hello[0] == 'S')
        {
            Channels.AddOrUpdate(name, _ => [new Receiver(connection)], (_, existing) => [.. existing, new Receiver(connection)]);
            return [];
        }
        return Channels.TryGetValue(name, out var receivers) ? receivers : [];
    }
}

/// <summary>What the tool sends to the relay: each payload is one frame as it is, with no envelope.</summary>
internal sealed class RelayCodec : StateMesh.Protocol.IMessageCodec
{
    public static RelayCodec Instance { get; } = new();

    public string Name => "relay";

    public int MaxMessagesPerFrame => 1;

    public StateMesh.Protocol.CodecError? ParseFrame(ReadOnlySequence<byte> frame, List<StateMesh.Protocol.Message> messages) =>
        throw new NotSupportedException("relay frames are counted, not parsed");

    public void WriteMessage(StateMesh.Protocol.Message message, IBufferWriter<byte> output) =>
        throw new NotSupportedException("the relay carries payloads, not messages");

    public int GetFrameLength(ReadOnlySpan<ReadOnlyMemory<byte>> encodedMessages) => encodedMessages[0].Length;

    public void WriteFrame(ReadOnlySpan<ReadOnlyMemory<byte>> encodedMessages, IBufferWriter<byte> output) => output.Write(encodedMessages[0].Span);
}
