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

    public bool Resyncing { get; set; }

    public bool AwaitingHead { get; set; }

    public bool HasProvider { get; set; }

    public int References { get; set; }

    public MergeStrategy? MergeStrategy { get; set; }

    public Action<Exception>? OnObserverError { get; set; }

    public TaskCompletionSource Loaded { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Each change's data; completes when the record is deleted.</summary>
    public Subject<byte[]> Changed { get; } = new();

    public JsonNode? ParseData() => JsonNode.Parse(Json);

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
