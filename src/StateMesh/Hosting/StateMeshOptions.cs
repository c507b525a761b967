using System.ComponentModel.DataAnnotations;

namespace StateMesh;

/// <summary>
/// Settings of a node, bound from the configuration section <c>StateMesh</c>. Defaults are deepstream's.
/// </summary>
public sealed class StateMeshOptions
{
    /// <summary>The configuration section these options bind from.</summary>
    public const string SectionName = "StateMesh";

    /// <summary>A name for this node, unique in a cluster; also the inproc:// name of its in-process endpoint.</summary>
    [Required]
    public string NodeName { get; set; } = "statemesh";

    /// <summary>The native TCP endpoint.</summary>
    public TcpEndpointOptions Tcp { get; set; } = new();

    /// <summary>Where durable data lives (used by durable storage adapters).</summary>
    public string DataDirectory { get; set; } = "data";

    /// <summary>Clients ping this often; a connection silent for twice this long is closed.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromMilliseconds(30_000);

    /// <summary>A connection that has not logged in by then is told AUTHENTICATION_TIMEOUT and closed.</summary>
    public TimeSpan UnauthenticatedTimeout { get; set; } = TimeSpan.FromMilliseconds(180_000);

    /// <summary>Failed logins before TOO_MANY_AUTH_ATTEMPTS and a close.</summary>
    [Range(1, 1000)]
    public int MaxAuthAttempts { get; set; } = 3;

    /// <summary>The largest frame a node accepts, in bytes; checked before the frame is buffered.</summary>
    [Range(1024, 256 * 1024 * 1024)]
    public int MaxMessageSize { get; set; } = 1024 * 1024;

    /// <summary>Messages queued for one connection before it counts as a slow consumer and is closed.</summary>
    [Range(16, 10_000_000)]
    public int OutboundQueueCapacity { get; set; } = 65_536;

    /// <summary>Bytes queued for one connection before it counts as a slow consumer and is closed.</summary>
    [Range(64 * 1024, long.MaxValue)]
    public long OutboundQueueMaxBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>Lets anyone log in when no handler answers (deepstream's "none" auth). Default: true when no users are configured.</summary>
    public bool? AllowAnonymous { get; set; }

    /// <summary>Users who may log in with a username and password, by name.</summary>
    public Dictionary<string, StateMeshUserOptions> Users { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Records: limits, storage rules and timeouts.</summary>
    public RecordOptions Records { get; set; } = new();

    /// <summary>RPC timeouts.</summary>
    public RpcOptions Rpc { get; set; } = new();

    /// <summary>Listening timeouts.</summary>
    public ListenOptions Listen { get; set; } = new();
}

/// <summary>Records: limits, storage rules and timeouts.</summary>
public sealed class RecordOptions
{
    /// <summary>The largest record document, in bytes of JSON; a write that would make it larger is refused.</summary>
    [Range(2, 256 * 1024 * 1024)]
    public int MaxDocumentSize { get; set; } = 1024 * 1024;

    /// <summary>Records whose names start with one of these live only in the store, never in durable storage.</summary>
    public List<string> StorageExclusionPrefixes { get; set; } = [];

    /// <summary>A read from the record store must answer within this time (CACHE_RETRIEVAL_TIMEOUT).</summary>
    public TimeSpan CacheRetrievalTimeout { get; set; } = TimeSpan.FromMilliseconds(1000);

    /// <summary>A read from durable storage must answer within this time (STORAGE_RETRIEVAL_TIMEOUT).</summary>
    public TimeSpan StorageRetrievalTimeout { get; set; } = TimeSpan.FromMilliseconds(2000);
}

/// <summary>The native TCP endpoint.</summary>
public sealed class TcpEndpointOptions
{
    /// <summary>Whether the node listens on TCP.</summary>
    public bool Enabled { get; set; }

    /// <summary>The address to bind.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>The port (0 picks a free one).</summary>
    [Range(0, 65535)]
    public int Port { get; set; } = 6021;
}

/// <summary>A configured user.</summary>
public sealed class StateMeshUserOptions
{
    /// <summary>A password hash made by <c>StateMesh.Server hash</c> (PBKDF2). Preferred.</summary>
    public string? PasswordHash { get; set; }

    /// <summary>A plain-text password: works, with a warning at start.</summary>
    public string? Password { get; set; }

    /// <summary>JSON sent to the client on login.</summary>
    public string? ClientData { get; set; }

    /// <summary>JSON the node keeps for permissions.</summary>
    public string? ServerData { get; set; }
}

/// <summary>RPC timeouts and what providers learn about callers.</summary>
public sealed class RpcOptions
{
    /// <summary>A provider must accept a request within this time.</summary>
    public TimeSpan AckTimeout { get; set; } = TimeSpan.FromMilliseconds(1000);

    /// <summary>A provider must respond within this time.</summary>
    public TimeSpan ResponseTimeout { get; set; } = TimeSpan.FromMilliseconds(10_000);

    /// <summary>Pass the caller's user id to the provider (requestorName).</summary>
    public bool ProvideRequestorName { get; set; }

    /// <summary>Pass the caller's client data to the provider (requestorData).</summary>
    public bool ProvideRequestorData { get; set; }
}

/// <summary>Listening: timeouts and the rematch.</summary>
public sealed class ListenOptions
{
    /// <summary>A listener must accept or reject an offer within this time.</summary>
    public TimeSpan ResponseTimeout { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>How often names without a provider are offered again to matching listeners.</summary>
    public TimeSpan RematchInterval { get; set; } = TimeSpan.FromMilliseconds(30_000);

    /// <summary>After every listener turned a name down, it is not offered again for this long.</summary>
    public TimeSpan MatchCooldown { get; set; } = TimeSpan.FromMilliseconds(10_000);
}
