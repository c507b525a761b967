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

    /// <summary>What one connection, and the node as a whole, may make the node hold.</summary>
    public LimitOptions Limits { get; set; } = new();

    /// <summary>Who may do what: deepstream's permissions file. None set: every logged-in client may do everything.</summary>
    public PermissionOptions Permissions { get; set; } = new();

    /// <summary>Login strategies besides configured users: deepstream's <c>http</c> webhook and storage-backed users.</summary>
    public AuthOptions Auth { get; set; } = new();
}

/// <summary>
/// The login chain. Each strategy answers a login or passes it on; the first answer decides. The order is
/// <see cref="Order"/>: by default configured users, the HTTP webhook, storage-backed users, handlers added in code
/// (<c>AddAuthenticationHandler</c>, JWT), then anonymous logins when allowed.
/// </summary>
public sealed class AuthOptions
{
    /// <summary>The strategies in the order they are asked: <c>users</c>, <c>http</c>, <c>storage</c>, <c>handlers</c>, <c>anonymous</c>.</summary>
    public List<string> Order { get; set; } = [];

    /// <summary>deepstream's <c>http</c> strategy: the login is POSTed to a URL that says who the user is.</summary>
    public HttpAuthOptions Http { get; set; } = new();

    /// <summary>deepstream's <c>storage</c> strategy: users kept as records, with PBKDF2 hashes.</summary>
    public StorageAuthOptions Storage { get; set; } = new();
}

/// <summary>
/// deepstream's <c>http</c> authentication: POST <c>{"authData": …, "connectionData": {"remoteAddress": …}}</c> as JSON
/// to <see cref="EndpointUrl"/>. A permitted status lets the user in: a string body is the user id, an object body
/// gives <c>id</c> (or <c>username</c>), <c>clientData</c> and <c>serverData</c>. Another status refuses the login (its
/// body is the reason the client sees); a retry status, a timeout or a refused connection is tried again.
/// </summary>
public sealed class HttpAuthOptions
{
    /// <summary>The webhook; none: the strategy is off.</summary>
    public Uri? EndpointUrl { get; set; }

    /// <summary>Statuses that accept the login.</summary>
    public List<int> PermittedStatusCodes { get; set; } = [200];

    /// <summary>Statuses that are tried again (then the login is refused).</summary>
    public List<int> RetryStatusCodes { get; set; } = [404, 504];

    /// <summary>Attempts after the first, for retry statuses, timeouts and connection errors.</summary>
    [Range(0, 10)]
    public int RetryAttempts { get; set; } = 3;

    /// <summary>The pause between attempts.</summary>
    public TimeSpan RetryInterval { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <summary>How long one attempt may take.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Fields of the login data also sent as HTTP headers of the same name (deepstream's promoteToHeader), such as <c>token</c>.</summary>
    public List<string> PromoteToHeader { get; set; } = [];

    /// <summary>Headers sent with every request (for example an API key of the webhook).</summary>
    public Dictionary<string, string> Headers { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// Whether a refusal by the webhook decides (deepstream's reportInvalidParameters). False: a refusal passes the login
    /// on to the next strategy.
    /// </summary>
    public bool ReportInvalidParameters { get; set; } = true;
}

/// <summary>
/// deepstream's <c>storage</c> authentication: a user is the record <c>{Table}/{username}</c> holding
/// <c>{"password": "&lt;PBKDF2 hash&gt;", "id": …, "clientData": …, "serverData": …}</c>.
/// </summary>
public sealed class StorageAuthOptions
{
    /// <summary>Whether the strategy is on.</summary>
    public bool Enabled { get; set; }

    /// <summary>The record name prefix of users.</summary>
    public string Table { get; set; } = "users";

    /// <summary>An unknown username logs in and is created with the password it gave (and a new id).</summary>
    public bool CreateUser { get; set; }
}

/// <summary>
/// Permissions in deepstream's shape (<c>permissions.yml</c>): per section (record, event, rpc, presence), name patterns
/// with <c>*</c> and <c>$variables</c>, and per rule type <c>true</c>, <c>false</c> or an expression.
/// </summary>
public sealed class PermissionOptions
{
    /// <summary>A permissions file, YAML (.yml, .yaml) or JSON (.json); watched and reloaded when it changes.</summary>
    public string? Path { get; set; }

    /// <summary>The permissions themselves, as YAML or JSON text (for rules kept in code); used when no path is set.</summary>
    public string? Rules { get; set; }

    /// <summary>Whether a change to the file is read while the node runs (a bad file is refused and the old rules stay).</summary>
    public bool Reload { get; set; } = true;

    /// <summary>How many times a rule runs again after loading the records it read with <c>_()</c> (deepstream's maxRuleIterations).</summary>
    [System.ComponentModel.DataAnnotations.Range(1, 10)]
    public int MaxRuleIterations { get; set; } = 3;

    /// <summary>The work one run of a rule may do (each operation, property read and call counts); past it the action gets MESSAGE_PERMISSION_ERROR.</summary>
    [System.ComponentModel.DataAnnotations.Range(100, 10_000_000)]
    public int MaxSteps { get; set; } = 10_000;

    /// <summary>The records one run of a rule may read with <c>_()</c>.</summary>
    [System.ComponentModel.DataAnnotations.Range(1, 1_000)]
    public int MaxRecordReads { get; set; } = 32;
}

/// <summary>
/// Bounds on everything a client can make a node hold. Past a bound the client gets the protocol's error for that
/// request (MESSAGE_DENIED where the protocol has no better one) and both the node and the connection go on.
/// </summary>
public sealed class LimitOptions
{
    /// <summary>Record subscriptions one connection may hold.</summary>
    [Range(1, int.MaxValue)]
    public int RecordSubscriptionsPerConnection { get; set; } = 10_000;

    /// <summary>Event subscriptions one connection may hold.</summary>
    [Range(1, int.MaxValue)]
    public int EventSubscriptionsPerConnection { get; set; } = 10_000;

    /// <summary>Record and event subscriptions of all connections together.</summary>
    [Range(1, int.MaxValue)]
    public int SubscriptionsPerNode { get; set; } = 2_000_000;

    /// <summary>Listen patterns one connection may register (records and events together).</summary>
    [Range(1, int.MaxValue)]
    public int ListenPatternsPerConnection { get; set; } = 100;

    /// <summary>Listen patterns of all connections together.</summary>
    [Range(1, int.MaxValue)]
    public int ListenPatternsPerNode { get; set; } = 10_000;

    /// <summary>The longest listen pattern, in characters.</summary>
    [Range(1, 65_536)]
    public int MaxListenPatternLength { get; set; } = 1024;

    /// <summary>RPC names one connection may provide.</summary>
    [Range(1, int.MaxValue)]
    public int ProvidedNamesPerConnection { get; set; } = 1_000;

    /// <summary>RPC names provided by all connections together.</summary>
    [Range(1, int.MaxValue)]
    public int ProvidedNamesPerNode { get; set; } = 100_000;

    /// <summary>RPC calls one connection may have waiting for an answer.</summary>
    [Range(1, int.MaxValue)]
    public int PendingRpcsPerConnection { get; set; } = 1_000;

    /// <summary>RPC calls waiting for an answer on the whole node.</summary>
    [Range(1, int.MaxValue)]
    public int PendingRpcsPerNode { get; set; } = 100_000;

    /// <summary>
    /// Names per second one connection may send in subscribe, unsubscribe, listen, provide and presence messages; past
    /// its burst the node stops reading that connection until the rate catches up (nothing is refused or lost).
    /// </summary>
    [Range(1, int.MaxValue)]
    public int NamesPerSecondPerConnection { get; set; } = 5_000;

    /// <summary>Names one connection may send at once before <see cref="NamesPerSecondPerConnection"/> applies.</summary>
    [Range(1, int.MaxValue)]
    public int NamesBurstPerConnection { get; set; } = 20_000;

    /// <summary>Connections that have not logged in yet; past it a new connection is closed at once.</summary>
    [Range(1, int.MaxValue)]
    public int UnauthenticatedConnections { get; set; } = 1_000;

    /// <summary>Records kept in memory that nobody subscribes to; beyond it the least recently used are evicted (storage keeps them).</summary>
    [Range(0, int.MaxValue)]
    public int CachedRecords { get; set; } = 100_000;

    /// <summary>Bytes of record data kept in memory for records nobody subscribes to.</summary>
    [Range(0, long.MaxValue)]
    public long CachedRecordBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>Writes waiting for durable storage; a writer past it waits (back-pressure) instead of growing the queue.</summary>
    [Range(1, int.MaxValue)]
    public int PendingStorageWrites { get; set; } = 10_000;

    /// <summary>Live tokens issued by the HTTP API's /api/auth; past it the oldest is revoked.</summary>
    [Range(1, int.MaxValue)]
    public int HttpTokens { get; set; } = 10_000;

    /// <summary>How long an HTTP API token stays valid after it was last used.</summary>
    public TimeSpan HttpTokenLifetime { get; set; } = TimeSpan.FromHours(1);
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
