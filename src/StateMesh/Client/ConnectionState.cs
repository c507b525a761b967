namespace StateMesh.Client;

/// <summary>Where a client's connection to its node stands.</summary>
public enum ConnectionState
{
    /// <summary>Not connected and not trying.</summary>
    Closed,
    /// <summary>Opening the transport and doing the handshake.</summary>
    Connecting,
    /// <summary>Logging in.</summary>
    Authenticating,
    /// <summary>Logged in; messages flow.</summary>
    Open,
    /// <summary>The connection was lost; reconnecting with backoff.</summary>
    Reconnecting,
    /// <summary>The node refused the login (given up).</summary>
    AuthenticationFailed,
    /// <summary>Reconnecting failed too many times (given up).</summary>
    Failed,
}
