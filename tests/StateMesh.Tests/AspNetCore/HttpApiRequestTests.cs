using System.Text;
using StateMesh.AspNetCore;

namespace StateMesh.Tests.AspNetCore;

/// <summary>The /api request's JSON: what the fuzzer found (fuzz/README.md), and the ordinary shapes.</summary>
public class HttpApiRequestTests
{
    private static async Task<HttpApiRequest?> Parse(byte[] body) =>
        HttpApiRequest.Parse(await HttpApi.ReadBodyAsync(new MemoryStream(body), CancellationToken.None));

    private static Task<HttpApiRequest?> Parse(string body) => Parse(Encoding.UTF8.GetBytes(body));

    private static async Task<string?> ParseLogin(string body) =>
        HttpApiRequest.ParseLogin(await HttpApi.ReadBodyAsync(new MemoryStream(Encoding.UTF8.GetBytes(body)), CancellationToken.None));

    [Fact]
    public async Task A_request_reads_its_token_login_and_operations()
    {
        var request = await Parse("{\"authData\":{\"username\":\"ana\"},\"body\":[{\"topic\":\"record\",\"action\":\"notify\",\"recordNames\":[\"a\",\"b\"]},42]}");
        Assert.NotNull(request);
        Assert.Null(request.Token);
        Assert.Equal("{\"username\":\"ana\"}", request.LoginJson);
        Assert.Equal(2, request.Operations.Length);
        Assert.Equal(("record", "notify"), (request.Operations[0]!.Topic, request.Operations[0]!.Action));
        Assert.Equal(["a", "b"], request.Operations[0]!.RecordNames!);
        Assert.Null(request.Operations[1]);
    }

    [Fact]
    public async Task Invalid_utf8_in_a_string_is_a_bad_request_not_an_exception()
    {
        // Found by fuzz/run.sh http-api: GetValue<string> on the token threw InvalidOperationException out of POST /api.
        var body = Convert.FromHexString(
            "7B22746F6B656E223A22496C6D33525A586A37416B307752304363645248366D507A385A7A326D5131625A3763A5A5A5A5A5A5A5A5A5A5A54D316130654D4451222C22626F6479223A5B7B22746F706963223A226576656E74222C22616374696F6E223A22656D6974222C226576656E744E616D65223A227072696365732F657572757364222C2264617461223A7B22626964223A312E303834327D7D5D7D");
        Assert.Null(await Parse(body));
    }

    [Fact]
    public async Task An_unpaired_surrogate_escape_is_a_bad_request()
    {
        Assert.Null(await Parse("{\"token\":\"\\udc00\",\"body\":[]}"));
    }

    [Fact]
    public async Task A_name_given_twice_is_not_json_the_api_accepts()
    {
        // JsonObject throws ArgumentException on the first lookup in an object with a duplicate name.
        Assert.Null(await Parse("{\"body\":[],\"body\":[]}"));
        Assert.Null(await Parse("{\"body\":[{\"topic\":\"event\",\"topic\":\"rpc\"}]}"));
    }

    [Fact]
    public async Task Login_data_of_api_auth_must_be_an_object_of_text()
    {
        Assert.Equal("{\"username\":\"ana\"}", await ParseLogin("{\"username\":\"ana\"}"));
        Assert.Null(await ParseLogin("[1]"));
        Assert.Null(await ParseLogin("{\"username\":\"\\udc00\"}"));
    }
}
