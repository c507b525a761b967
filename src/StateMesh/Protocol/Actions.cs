#pragma warning disable CS1591 // the action names are deepstream's and documented in docs/protocol.md
namespace StateMesh.Protocol;

/// <summary>CONNECTION actions.</summary>
public enum ConnectionAction
{
    Unknown = 0, Error = 1, Ping = 2, Pong = 3, Accept = 4, Challenge = 5, Reject = 6, Redirect = 7,
    Closing = 8, Closed = 9, AuthenticationTimeout = 100, InvalidMessage = 101,
}

/// <summary>AUTH actions.</summary>
public enum AuthAction
{
    Unknown = 0, Error = 1, Request = 2, AuthSuccessful = 3, AuthUnsuccessful = 4,
    TooManyAuthAttempts = 100, InvalidMessage = 101, InvalidMessageData = 102,
}

/// <summary>EVENT actions.</summary>
public enum EventAction
{
    Unknown = 0, Error = 1, Emit = 2, Subscribe = 3, Unsubscribe = 4, Listen = 5, Unlisten = 6,
    ListenAccept = 7, ListenReject = 8, SubscriptionHasProvider = 9, SubscriptionHasNoProvider = 10,
    SubscriptionForPatternFound = 11, SubscriptionForPatternRemoved = 12, InvalidListenRegex = 100,
    ListenResponseTimeout = 101, ListenUnsuccessful = 102, MessagePermissionError = 103, MessageDenied = 104,
    InvalidMessageData = 105, MultipleSubscriptions = 106, NotSubscribed = 107,
}

/// <summary>RECORD actions.</summary>
public enum RecordAction
{
    Unknown = 0, Error = 1, Notify = 2, Read = 3, ReadResponse = 4, Head = 5, HeadResponse = 6,
    HeadBulk = 7, HeadResponseBulk = 8, Delete = 9, DeleteSuccess = 10, DeleteBulk = 11, DeleteBulkSuccess = 12,
    Deleted = 13, WriteAcknowledgement = 14, Create = 15, CreateAndUpdate = 16, CreateAndPatch = 17, Update = 18,
    Patch = 19, Erase = 20, SubscribeAndHead = 21, SubscribeAndRead = 22, SubscribeCreateAndRead = 23,
    SubscribeCreateAndUpdate = 24, Subscribe = 25, Unsubscribe = 26, Listen = 27, Unlisten = 28, ListenAccept = 29,
    ListenReject = 30, SubscriptionHasProvider = 31, SubscriptionHasNoProvider = 32,
    SubscriptionForPatternFound = 33, SubscriptionForPatternRemoved = 34,
    CacheRetrievalTimeout = 100, StorageRetrievalTimeout = 101, VersionExists = 102, RecordLoadError = 103,
    RecordCreateError = 104, RecordUpdateError = 105, RecordDeleteError = 106, RecordNotFound = 107,
    InvalidVersion = 108, InvalidPatchOnHotpath = 109, InvalidListenRegex = 110, ListenResponseTimeout = 111,
    ListenUnsuccessful = 112, RecordNotifyError = 113, MessagePermissionError = 114, MessageDenied = 115,
    InvalidMessageData = 116, MultipleSubscriptions = 117, NotSubscribed = 118,
}

/// <summary>RPC actions.</summary>
public enum RpcAction
{
    Unknown = 0, Error = 1, Request = 2, Accept = 4, Response = 5, Reject = 6, RequestError = 7,
    Provide = 8, Unprovide = 9, NoRpcProvider = 100, AcceptTimeout = 101, MultipleAccept = 102,
    InvalidRpcCorrelationId = 103, ResponseTimeout = 104, MultipleResponse = 105, MessagePermissionError = 106,
    MessageDenied = 107, InvalidMessageData = 108, MultipleProviders = 109, NotProvided = 110,
}

/// <summary>PRESENCE actions.</summary>
public enum PresenceAction
{
    Unknown = 0, Error = 1, QueryAll = 2, QueryAllResponse = 3, Query = 4, QueryResponse = 5,
    PresenceJoin = 6, PresenceJoinAll = 7, PresenceLeave = 8, PresenceLeaveAll = 9, Subscribe = 10, Unsubscribe = 11,
    SubscribeAll = 12, UnsubscribeAll = 13,
    /// <summary>StateMesh only (native protocol): how many users are online.</summary>
    QueryCount = 50,
    /// <summary>StateMesh only: the answer to QueryCount, the number in <c>version</c>.</summary>
    QueryCountResponse = 51,
    InvalidPresenceUsers = 100, MessagePermissionError = 101,
    MessageDenied = 102, MultipleSubscriptions = 103, NotSubscribed = 104,
}

/// <summary>PARSER actions.</summary>
public enum ParserAction
{
    Unknown = 0, UnknownTopic = 1, UnknownAction = 2, InvalidMessage = 3, MessageParseError = 4,
    MaximumMessageSizeExceeded = 5, Error = 6, InvalidMetaParams = 7,
}
