namespace StateMesh.Protocol;

/// <summary>The topic of a message, with deepstream's numeric values.</summary>
public enum Topic : byte
{
    /// <summary>Not set.</summary>
    Unknown = 0,
    /// <summary>Frames that could not be parsed.</summary>
    Parser = 1,
    /// <summary>Handshake and heartbeats.</summary>
    Connection = 2,
    /// <summary>Authentication.</summary>
    Auth = 3,
    /// <summary>Events.</summary>
    Event = 4,
    /// <summary>Records.</summary>
    Record = 5,
    /// <summary>Remote procedure calls.</summary>
    Rpc = 6,
    /// <summary>Presence.</summary>
    Presence = 7,
    /// <summary>Monitoring (server to server).</summary>
    Monitoring = 8,
    /// <summary>Cluster (server to server).</summary>
    Cluster = 9,
    /// <summary>Locks (server to server).</summary>
    Lock = 10,
    /// <summary>State registry (server to server).</summary>
    StateRegistry = 11,
    /// <summary>Generic error.</summary>
    Error = 100,
}
