namespace StateMesh.Protocol;

/// <summary>
/// One protocol message: the single vocabulary of the engine, whatever codec carried it.
/// Topics and actions keep deepstream's numeric values. <see cref="Data"/> holds UTF-8 JSON bytes that
/// are routed, not parsed. An absent optional field is <see langword="null"/>: presence matters on the wire.
/// </summary>
public sealed record Message
{
    /// <summary>The topic.</summary>
    public Topic Topic { get; init; }

    /// <summary>The action, a value of the topic's action enum (for example <see cref="EventAction"/>).</summary>
    public int Action { get; init; }

    /// <summary>The name (event, record, RPC, user, or listen pattern).</summary>
    public string? Name { get; init; }

    /// <summary>Names of a bulk message.</summary>
    public string[]? Names { get; init; }

    /// <summary>The correlation id that ties a reply to its request.</summary>
    public string? CorrelationId { get; init; }

    /// <summary>The payload: UTF-8 JSON, carried without re-parsing.</summary>
    public ReadOnlyMemory<byte>? Data { get; init; }

    /// <summary>A record version; -1 means "missing" in replies and "next" in writes.</summary>
    public int? Version { get; init; }

    /// <summary>A record path such as <c>a.b[2].c</c>.</summary>
    public string? Path { get; init; }

    /// <summary>True on acknowledgements.</summary>
    public bool IsAck { get; init; }

    /// <summary>True on errors.</summary>
    public bool IsError { get; init; }

    /// <summary>True when the writer asked for a write acknowledgement.</summary>
    public bool IsWriteAck { get; init; }

    /// <summary>The topic of the message an error answers.</summary>
    public Topic? OriginalTopic { get; init; }

    /// <summary>The action of the message an error answers.</summary>
    public int? OriginalAction { get; init; }

    /// <summary>The subscription name offered to a listener.</summary>
    public string? Subscription { get; init; }

    /// <summary>Versions by record name (HEAD_RESPONSE_BULK).</summary>
    public IReadOnlyDictionary<string, int>? Versions { get; init; }

    /// <summary>The user id of an RPC requestor, when the node passes it on.</summary>
    public string? RequestorName { get; init; }

    /// <summary>The client data of an RPC requestor (JSON), when the node passes it on.</summary>
    public ReadOnlyMemory<byte>? RequestorData { get; init; }

    /// <summary>RPC (native protocol only): the caller's own response timeout in milliseconds; the node uses the shorter of it and its own.</summary>
    public int? RequestTimeout { get; init; }

    /// <summary>CONNECTION: the URL the client dialled.</summary>
    public string? Url { get; init; }

    /// <summary>CONNECTION: the protocol version of the client.</summary>
    public string? ProtocolVersion { get; init; }

    /// <summary>CONNECTION: the SDK version of the client.</summary>
    public string? SdkVersion { get; init; }

    /// <summary>CONNECTION: the SDK type of the client.</summary>
    public string? SdkType { get; init; }

    /// <summary>Creates a message with a topic and an action.</summary>
    public static Message Create<TAction>(Topic topic, TAction action)
        where TAction : struct, Enum => new() { Topic = topic, Action = System.Runtime.CompilerServices.Unsafe.As<TAction, int>(ref action) };

    /// <inheritdoc />
    public override string ToString()
    {
        var text = new System.Text.StringBuilder();
        text.Append(Topic).Append(' ').Append(ActionNames.Of(Topic, Action));
        if (Name is not null) { text.Append(" name=").Append(Name); }
        if (Names is not null) { text.Append(" names=[").Append(string.Join(",", Names)).Append(']'); }
        if (CorrelationId is not null) { text.Append(" cid=").Append(CorrelationId); }
        if (Version is not null) { text.Append(" v=").Append(Version); }
        if (Path is not null) { text.Append(" path=").Append(Path); }
        if (IsAck) { text.Append(" ack"); }
        if (IsError) { text.Append(" error"); }
        if (IsWriteAck) { text.Append(" writeAck"); }
        if (OriginalAction is not null) { text.Append(" original=").Append(ActionNames.Of(OriginalTopic ?? Topic, OriginalAction.Value)); }
        if (Data is { } data) { text.Append(" data=").Append(System.Text.Encoding.UTF8.GetString(data.Span[..Math.Min(data.Length, 200)])); }
        return text.ToString();
    }
}

/// <summary>Names of actions, for logs and errors.</summary>
public static class ActionNames
{
    /// <summary>The name of an action of a topic.</summary>
    public static string Of(Topic topic, int action) => topic switch
    {
        Topic.Parser => ((ParserAction)action).ToString(),
        Topic.Connection => ((ConnectionAction)action).ToString(),
        Topic.Auth => ((AuthAction)action).ToString(),
        Topic.Event => ((EventAction)action).ToString(),
        Topic.Record => ((RecordAction)action).ToString(),
        Topic.Rpc => ((RpcAction)action).ToString(),
        Topic.Presence => ((PresenceAction)action).ToString(),
        _ => action.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>True when <paramref name="action"/> is a defined action of <paramref name="topic"/>.</summary>
    public static bool IsDefined(Topic topic, int action) => topic switch
    {
        Topic.Parser => Enum.IsDefined((ParserAction)action),
        Topic.Connection => Enum.IsDefined((ConnectionAction)action),
        Topic.Auth => Enum.IsDefined((AuthAction)action),
        Topic.Event => Enum.IsDefined((EventAction)action),
        Topic.Record => Enum.IsDefined((RecordAction)action),
        Topic.Rpc => Enum.IsDefined((RpcAction)action),
        Topic.Presence => Enum.IsDefined((PresenceAction)action),
        _ => false,
    };
}
