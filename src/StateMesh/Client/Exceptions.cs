namespace StateMesh.Client;

/// <summary>Something a StateMesh call could not do; the message says what and what to do.</summary>
public class StateMeshException : Exception
{
    /// <summary>Creates the exception.</summary>
    public StateMeshException(string message, Exception? innerException = null) : base(message, innerException) { }
}

/// <summary>The node refused the login.</summary>
public sealed class StateMeshAuthenticationException : StateMeshException
{
    /// <summary>Creates the exception.</summary>
    public StateMeshAuthenticationException(string message, string? reason, bool tooManyAttempts) : base(message)
    {
        Reason = reason;
        TooManyAttempts = tooManyAttempts;
    }

    /// <summary>The reason the node gave (its JSON), if any.</summary>
    public string? Reason { get; }

    /// <summary>True when the node closed the connection after too many failed logins.</summary>
    public bool TooManyAttempts { get; }
}

/// <summary>The client was offline longer than the offline buffer allows; the operation was not sent.</summary>
public sealed class StateMeshOfflineException : StateMeshException
{
    /// <summary>Creates the exception.</summary>
    public StateMeshOfflineException(string message) : base(message) { }
}

/// <summary>
/// The client has more waiting to be written to the connection than <see cref="StateMeshClientOptions.OutboundQueueCapacity"/>
/// or <see cref="StateMeshClientOptions.OutboundQueueMaxBytes"/> allow (the connection does not drain as fast as the
/// application sends); the operation was not sent. Send less, wait for acknowledgements, or raise the limits.
/// </summary>
public sealed class StateMeshBackpressureException : StateMeshException
{
    /// <summary>Creates the exception.</summary>
    public StateMeshBackpressureException(string message) : base(message) { }
}

/// <summary>The node answered a request with an error.</summary>
public sealed class StateMeshProtocolException : StateMeshException
{
    /// <summary>Creates the exception.</summary>
    public StateMeshProtocolException(string message, Protocol.Topic topic, int action) : base(message)
    {
        Topic = topic;
        Action = action;
    }

    /// <summary>The topic of the error.</summary>
    public Protocol.Topic Topic { get; }

    /// <summary>The error action (for example <see cref="Protocol.EventAction.MultipleSubscriptions"/>).</summary>
    public int Action { get; }
}
