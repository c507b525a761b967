using System.Reactive.Subjects;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace StateMesh.Client;

/// <summary>The client's copy of one subscribed record, shared by every handle on it.</summary>
internal sealed class RecordEntry(string name)
{
    private static readonly byte[] EmptyObject = "{}"u8.ToArray();

    public string Name { get; } = name;

    /// <summary>Guards the state and every emission, so observers see changes in order.</summary>
    public object Gate { get; } = new();

    public int Version { get; set; } = -1;

    /// <summary>The current data, serialized; replaced, never modified.</summary>
    public byte[] Json { get; set; } = EmptyObject;

    /// <summary>Loaded at least once; readable without the gate (see <see cref="ReadyFlag"/>).</summary>
    public bool Ready
    {
        get => Volatile.Read(ref ReadyFlag);
        set => Volatile.Write(ref ReadyFlag, value);
    }

    public bool ReadyFlag;

    public bool Deleted { get; set; }

    /// <summary>
    /// The copy may differ from the node's (a write was refused, or changes were missed): the answer to the last resync
    /// READ is adopted whatever its version.
    /// </summary>
    public bool Resyncing { get; set; }

    /// <summary>Resync READs sent and not yet answered.</summary>
    public int ResyncReads { get; set; }

    /// <summary>Writes sent after the last resync READ, so not reflected in its answer.</summary>
    public int WritesSinceResyncRead { get; set; }

    public bool AwaitingHead { get; set; }

    public bool HasProvider { get; set; }

    public int References { get; set; }

    public MergeStrategy? MergeStrategy { get; set; }

    public Action<Exception>? OnObserverError { get; set; }

    public TaskCompletionSource Loaded { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Each change's data; completes when the record is deleted.</summary>
    public Subject<byte[]> Changed { get; } = new();

    public JsonNode? ParseData() => JsonNode.Parse(Json);

    // Messages about this record waiting to be handed to the connection, in the order they were made (under Gate).
    private readonly Queue<Outgoing> _outbox = new();
    private bool _sending;

    /// <summary>A message waiting in <see cref="_outbox"/>; <see cref="Sent"/> is null for the sender's own message.</summary>
    public readonly record struct Outgoing(Protocol.Message Message, bool IfOpen, TaskCompletionSource? Sent);

    /// <summary>
    /// Puts a message in line behind every message queued before it. Call under <see cref="Gate"/>. Returns true when
    /// the caller is now the one sender and must hand the queue over (<see cref="TryTakeOutgoing"/>) after leaving the
    /// gate; otherwise <paramref name="sent"/> completes once the current sender has handed this message over.
    /// </summary>
    public bool Enqueue(Protocol.Message message, bool ifOpen, out Task? sent)
    {
        if (_sending)
        {
            var handoff = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _outbox.Enqueue(new Outgoing(message, ifOpen, handoff));
            sent = handoff.Task;
            return false;
        }
        _sending = true;
        _outbox.Enqueue(new Outgoing(message, ifOpen, null));
        sent = null;
        return true;
    }

    /// <summary>The next message to hand over; false (and no sender any more) when none is left. Call under <see cref="Gate"/>.</summary>
    public bool TryTakeOutgoing(out Outgoing next)
    {
        if (_outbox.TryDequeue(out next))
        {
            return true;
        }
        _sending = false;
        return false;
    }

    /// <summary>Sets new state and tells observers. Call under <see cref="Gate"/>.</summary>
    public void Apply(int version, byte[] json)
    {
        Version = version;
        Json = json;
        try
        {
            Changed.OnNext(json);
        }
        catch (Exception ex)
        {
            OnObserverError?.Invoke(ex);
        }
    }

    public static byte[] Serialize(JsonNode? node) => node is null ? "null"u8.ToArray() : JsonSerializer.SerializeToUtf8Bytes(node, Protocol.StateMeshJsonContext.Default.JsonNode);
}
